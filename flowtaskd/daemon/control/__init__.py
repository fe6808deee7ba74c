"""The control socket: the server, its requests and the batched event streams."""
