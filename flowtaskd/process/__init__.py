"""Operating-system processes: spawning a step's command in its own process group, relaying
its output into log files, watching for its exit (pidfds, one epoll set per loop)."""
