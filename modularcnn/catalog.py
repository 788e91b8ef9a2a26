"""Configurable objects — initialisers, losses, optimizers, schedules, metrics — and their look-up by
name or serialised config: ``get("adam")``, ``get({"class_name": "Adam", "config": {...}})``,
``serialize(obj)``."""


class Configurable:
    """An object rebuilt from its constructor's keyword arguments: ``cls(**obj.get_config())``."""

    def get_config(self):
        """The constructor's keyword arguments, JSON-serialisable."""
        return {}

    @classmethod
    def from_config(cls, config):
        """Rebuild the object from :meth:`get_config`'s output."""
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Catalog:
    """The named classes of one kind of object.

    Parameters
    ----------
    kind : str
        How messages call the objects, e.g. ``"optimizer"``.
    base : type
        Their base class: instances are returned as they are, subclasses are instantiated.
    aliases : dict
        Extra names (``"mse"``) -> class; every class is also found by its own name, in any case.
    """

    def __init__(self, kind, base, classes, aliases=None):
        self.kind = kind
        self.base = base
        self.names = {cls.__name__.lower(): cls for cls in classes}
        self.names.update({name.lower(): cls for name, cls in (aliases or {}).items()})

    def lookup(self, name):
        """The class called ``name`` (case-insensitive), or a ValueError listing the valid names."""
        try:
            return self.names[name.strip().lower()]
        except KeyError:
            raise ValueError(
                f"Unknown {self.kind} {name!r}. Valid names: {', '.join(sorted(self.names))}."
            ) from None

    def get(self, identifier):
        """An object from a name (default settings), an instance, a class or a serialised dict."""
        if isinstance(identifier, self.base):
            return identifier
        is_class = isinstance(identifier, type) and issubclass(identifier, self.base)
        if is_class or isinstance(identifier, str):
            cls = identifier if is_class else self.lookup(identifier)
            try:
                return cls()
            except TypeError as err:
                raise ValueError(
                    f"{self.kind.capitalize()} {cls.__name__} cannot be built from its name alone: "
                    f'{err}. Pass {{"class_name": ..., "config": {{...}}}} or an instance.'
                ) from None
        if isinstance(identifier, dict):
            if "class_name" not in identifier:
                raise ValueError(
                    f"A {self.kind} config dict needs the keys 'class_name' and 'config'; "
                    f"received keys {sorted(identifier)}."
                )
            cls = self.lookup(identifier["class_name"])
            try:
                return cls.from_config(identifier.get("config") or {})
            except TypeError as err:
                raise ValueError(f"Invalid config for {self.kind} {cls.__name__}: {err}") from None
        raise ValueError(
            f"Expected a {self.kind} name, {self.base.__name__} instance or config dict, "
            f"received {type(identifier).__name__}: {identifier!r}."
        )

    def serialize(self, obj):
        """``{"class_name": ..., "config": ...}``; :meth:`get` turns it back into an equal object."""
        if not isinstance(obj, self.base):
            raise ValueError(f"Expected a {self.base.__name__} instance, received {type(obj).__name__}.")
        return {"class_name": type(obj).__name__, "config": obj.get_config()}


def split_config(config, kind, custom_hint):
    """``(class_name, options)`` of a serialised ``{"class_name": ..., "config": {...}}``: ours, Keras
    3's (with ``module``) or Keras 2's. A ``module`` outside Keras is a custom object and is refused
    (ValueError ending in ``custom_hint``: how to register one), as is anything but such a dict."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(f"a {kind} config needs 'class_name' and 'config', got {config!r}")
    class_name, options = config["class_name"], dict(config.get("config") or {})
    module = config.get("module")
    if module is not None and not str(module).startswith("keras"):
        raise ValueError(f"{kind} {class_name!r} of module {module!r} is a custom object; "
                         f"{custom_hint}")
    return class_name, options
