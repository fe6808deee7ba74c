"""Step kinds: the component contract (:mod:`~flowtaskd.components.base`,
:mod:`~flowtaskd.components.context`), the registry (built-ins plus entry points) and the
built-in components."""
