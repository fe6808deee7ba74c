"""What leaves the daemon besides the control socket: webhooks, Prometheus metrics and
plugin subscribers."""
