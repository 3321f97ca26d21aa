"""The mixed-column likelihood: exact values against torch.distributions, and the mask."""

import torch
from torch.distributions import Categorical, Normal

import vaezoo
from vaezoo_tabular.likelihood import MixedColumns
from vaezoo_tabular.networks import Decoder, Encoder

# columns: 0 real, 1 categorical (3 classes), 2 real, 3 categorical (2 classes)
REAL, CAT = [0, 2], [1, 3]


def hand_case():
    mean = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    log_sd = torch.tensor([[0.0, 0.3], [-0.5, 0.1]])
    logits = [torch.tensor([[1.0, 0.0, -1.0], [0.2, 0.3, 0.1]]), torch.tensor([[0.0, 2.0], [1.0, -1.0]])]
    x = torch.tensor([[0.1, 2.0, -0.4, 1.0], [1.5, 1.0, 3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    dist = MixedColumns(vaezoo.Gaussian(mean, log_sd), REAL, [vaezoo.Categorical(lg) for lg in logits], CAT)
    return dist, x, mask, mean, log_sd, logits


def test_log_prob_matches_torch_distributions_on_observed_cells():
    dist, x, mask, mean, log_sd, logits = hand_case()
    normal = Normal(mean, log_sd.exp())
    row0 = (normal.log_prob(x[:, REAL])[0, 0] + Categorical(logits=logits[0][0]).log_prob(torch.tensor(2))
            + Categorical(logits=logits[1][0]).log_prob(torch.tensor(1)))
    row1 = Categorical(logits=logits[0][1]).log_prob(torch.tensor(1)) + normal.log_prob(x[:, REAL])[1, 1]
    torch.testing.assert_close(dist.log_prob(x, mask), torch.stack([row0, row1]))
    # unmasked: every cell counts
    full = normal.log_prob(x[:, REAL]).sum(-1) + torch.stack([
        Categorical(logits=lg).log_prob(x[:, j].long()) for j, lg in zip(CAT, logits)]).sum(0)
    torch.testing.assert_close(dist.log_prob(x), full)


def test_missing_cells_do_not_change_log_prob():
    dist, x, mask, *_ = hand_case()
    before = dist.log_prob(x, mask)
    changed = torch.where(mask.bool(), x, torch.tensor([[99.0, 7.0, float("nan"), -3.0]]).expand_as(x))
    assert not torch.equal(changed, x)
    torch.testing.assert_close(dist.log_prob(changed, mask), before)
    observed_changed = x.clone()
    observed_changed[0, 0] += 1.0  # an observed cell does count
    assert not torch.allclose(dist.log_prob(observed_changed, mask), before)


def test_column_scale_broadcasts_and_mean_is_mode():
    cats = [vaezoo.Categorical(torch.tensor([[0.0, 1.0, 0.0]] * 3)), vaezoo.Categorical(torch.tensor([[3.0, 0.0]] * 3))]
    dist = MixedColumns(vaezoo.Gaussian(torch.zeros(3, 2), torch.tensor([0.0, 1.0])), REAL, cats, CAT)
    assert dist.mean.tolist() == [[0.0, 1.0, 0.0, 0.0]] * 3
    torch.manual_seed(0)
    s = torch.stack([dist.sample() for _ in range(2000)])
    assert abs(s[:, :, 2].std().item() - torch.e) < 0.15  # the second real column has sd e


def test_encoder_ignores_values_of_missing_cells():
    torch.manual_seed(0)
    enc = Encoder(REAL, CAT, [3, 2], hidden=[8], latent=2)
    _, x, mask, *_ = hand_case()
    mean, logvar = enc({"x": x, "mask": mask})
    garbage = torch.where(mask.bool(), x, torch.full_like(x, 5.0))
    mean2, logvar2 = enc({"x": garbage, "mask": mask})
    torch.testing.assert_close((mean, logvar), (mean2, logvar2))
    dec = Decoder(REAL, CAT, [3, 2], hidden=[8], latent=2, scale="row", min_log_sd=-2.0)
    out = dec(mean)
    assert out.log_prob(x, mask).shape == (2,) and out.real.log_scale.min() >= -2.0
