"""Layer 3: the Modality protocol and its version, the registry of installed plugins, recipes
by name, the plugin check and the scaffold for new plugins."""
