"""Reading audio folders, clips of T frames (random crops and tiles), splits and statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from vaezoo import InputError
from vaezoo_audio import AudioModality, FrontEnd, list_audio, read_audio
from vaezoo_audio.data import FeatureStore, crop_or_pad, tiles

from audio_helpers import CLIP_FRAMES, HOP, RATE, make_recipe, sine_sweep, sound_folder, tone, write_audio, one_thread  # noqa: F401


def test_read_wav_and_ogg_mixed_down_to_mono(tmp_path):
    left, right = tone(0.3, 440, rate=22050), tone(0.3, 880, rate=22050)
    wav = write_audio(tmp_path / "stereo.wav", np.stack([left, right], 1), rate=22050)
    ogg = write_audio(tmp_path / "sweep.OGG", sine_sweep(0.5, rate=16000), rate=16000, format="OGG", subtype="VORBIS")
    wave, rate = read_audio(wav)
    assert rate == 22050 and wave.shape == (len(left),) and wave.dtype == torch.float32
    assert torch.allclose(wave, torch.from_numpy((left + right) / 2), atol=1e-4)   # 16-bit PCM rounding
    wave, rate = read_audio(ogg)
    assert rate == 16000 and abs(len(wave) - 8000) < 100 and float(wave.abs().max()) > 0.3
    assert list_audio(tmp_path, [".wav", ".ogg"]) == [wav, ogg]   # suffixes match in any case


def test_corrupt_empty_and_missing_files_name_the_file(tmp_path):
    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(40)))
    with pytest.raises(InputError, match="broken.wav: cannot read audio"):
        read_audio(corrupt)
    empty = write_audio(tmp_path / "empty.wav", np.zeros(0, np.float32))
    with pytest.raises(InputError, match="empty.wav: the file holds no audio samples"):
        read_audio(empty)
    with pytest.raises(InputError, match="nothing.ogg: audio file not found"):
        read_audio(tmp_path / "nothing.ogg")


def test_a_corrupt_file_in_the_folder_is_named_when_reached(tmp_path):
    folder = sound_folder(tmp_path / "sounds", 6)
    (folder / "zz-garbage.ogg").write_bytes(b"OggS" + bytes(200))
    modality = AudioModality(make_recipe(folder), tmp_path)
    with pytest.raises(InputError, match="zz-garbage.ogg: cannot read audio"):
        modality.fit(tmp_path)   # decodes the training files; planning the tiles reads the others' headers
        for split in ("validation", "test"):
            modality.dataset(split)


def test_crop_pad_and_tile_counts():
    log_mel = torch.arange(20.0).expand(3, 20)
    clip, real = crop_or_pad(log_mel, 15, 8, -9.0)
    assert real == 5 and clip.shape == (3, 8) and clip[0, :5].tolist() == [15, 16, 17, 18, 19]
    assert (clip[:, 5:] == -9.0).all()
    assert [tiles(n, 8) for n in (1, 8, 9, 16, 17)] == [1, 1, 2, 2, 3]


def fitted(tmp_path, folder, **data):
    run = tmp_path / "run"
    run.mkdir()
    modality = AudioModality(make_recipe(folder, data=data), run)
    modality.fit(run)
    return modality


def test_short_and_long_files_become_clips_of_t_frames(tmp_path):
    folder = tmp_path / "two"
    write_audio(folder / "a-short.wav", tone(0.05, 500))                 # 7 frames < T = 16
    write_audio(folder / "b-long.wav", sine_sweep(1.0))                  # 126 frames
    write_audio(folder / "c-other.wav", tone(0.3, 800))
    modality = fitted(tmp_path, folder, validation_fraction=0.5, test_fraction=0.5)
    store = modality.source.store
    long_path = folder / "b-long.wav"
    full = modality.normalizer.normalize(store.features(long_path))
    frames = full.shape[-1]
    assert frames == RATE // HOP + 1 == store.frames(long_path)

    # Evaluation: consecutive tiles cover every frame once, the last padded with silence.
    from vaezoo_audio.data import TiledClipDataset, RandomClipDataset
    tiled = TiledClipDataset(store, [folder / "a-short.wav", long_path], modality.normalizer, CLIP_FRAMES)
    assert len(tiled) == 1 + tiles(frames, CLIP_FRAMES) == 1 + 8
    short = tiled[0]
    assert short["x"].shape == (1, 32, CLIP_FRAMES) and int(short["length"]) == 7 + 1 - 1
    silence = modality.normalizer.normalize(torch.full((32, 1), modality.front_end.log_floor))
    assert torch.allclose(short["x"][0, :, 7:], silence.expand(32, CLIP_FRAMES - 7))
    items = [tiled[i] for i in range(1, len(tiled))]
    joined = torch.cat([it["x"][0, :, : int(it["length"])] for it in items], -1)
    assert torch.allclose(joined, full) and sum(int(it["length"]) for it in items) == frames

    # Training: a random window of T real frames, drawn from the global RNG (so seeds replay it).
    crops = RandomClipDataset(store, [long_path, folder / "a-short.wav"], modality.normalizer, CLIP_FRAMES)
    torch.manual_seed(1)
    first = [crops[0]["x"] for _ in range(5)]
    torch.manual_seed(1)
    again = [crops[0]["x"] for _ in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert len({tuple(x[0, 0, :3].tolist()) for x in first}) > 1          # the windows move
    for x in first:   # each is a real window of the file
        starts = [s for s in range(frames - CLIP_FRAMES + 1) if torch.allclose(full[:, s : s + CLIP_FRAMES], x[0])]
        assert starts
    assert int(crops[1]["length"]) == 7


def test_splits_are_seeded_disjoint_and_statistics_saved(tmp_path):
    folder = sound_folder(tmp_path / "sounds", 12)
    modality = fitted(tmp_path, folder)
    files = modality.source.files
    assert sorted(sum(files.values(), [])) == list_audio(folder, [".wav"])
    assert len(files["test"]) == len(files["validation"]) == 2          # 0.2 * 12, rounded
    stats = json.loads((tmp_path / "run" / "audio_stats.json").read_text())
    assert stats["files"] == 8 and len(stats["mean"]) == 32 and stats["features"]["n_mels"] == 32
    again = AudioModality(make_recipe(folder), tmp_path / "run")        # a later instance reads the file
    assert torch.allclose(again.normalizer.mean, modality.normalizer.mean)
    assert again.source.files == files
    batch = modality.collate([modality.dataset("train")[i] for i in range(3)])
    assert batch["x"].shape == (3, 1, 32, CLIP_FRAMES) and batch["length"].shape == (3,)
    assert abs(float(modality.normalizer.normalize(torch.cat(list(modality.source.training_features()), -1)).mean())) < 1e-3


def test_trimming_and_the_bounded_cache(tmp_path):
    folder = tmp_path / "quiet"
    padded = np.concatenate([np.zeros(RATE // 2, np.float32), tone(0.25, 600), np.zeros(RATE // 2, np.float32)])
    for i in range(4):
        write_audio(folder / f"{i}.wav", padded)
    recipe = make_recipe(folder, data={"trim_silence": True, "cache_mb": 0})
    store = FeatureStore(FrontEnd(recipe.features), recipe.data)
    assert 30 <= store.frames(folder / "0.wav") <= 38 < FrontEnd(recipe.features).frames(len(padded))   # 0.25 s = 31 frames
    assert store.used == 0 and not store._cache
    recipe = make_recipe(folder, data={"cache_mb": 1})
    store = FeatureStore(FrontEnd(recipe.features), recipe.data)
    size = store.features(folder / "0.wav").numel() * 4
    store.budget = 2 * size                                          # room for two files' features
    for i in range(4):
        store.features(folder / f"{i}.wav")
    assert list(store._cache) == [folder / "2.wav", folder / "3.wav"] and store.used <= store.budget


def test_load_inputs_reads_files_from_the_command_line(tmp_path):
    folder = sound_folder(tmp_path / "sounds", 6)
    modality = fitted(tmp_path, folder)
    other = write_audio(tmp_path / "elsewhere.ogg", sine_sweep(0.5, rate=16000), rate=16000, format="OGG")
    batch = modality.load_inputs([str(folder / "sound-01.wav"), str(other)])
    assert batch["x"].shape == (2, 1, 32, CLIP_FRAMES) and batch["length"].tolist()[1] == CLIP_FRAMES
    with pytest.raises(InputError, match="missing.wav"):
        modality.load_inputs([str(tmp_path / "missing.wav")])
    with pytest.raises(InputError, match="no input audio files"):
        modality.load_inputs([])
    assert sf.info(str(other)).samplerate == 16000
