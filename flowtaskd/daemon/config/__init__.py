"""The daemon's config: the section models and path rules, loading and validating one
YAML or TOML file into a frozen ``DaemonConfig``."""
