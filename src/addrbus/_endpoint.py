"""Endpoint[Req, Resp]: an address that names its request and reply types.

``CREATE_USER = Endpoint[CreateUser, User]("users.create")`` is a ``str`` at
runtime, so it works wherever an address does (``consumer``, ``on``, ``send``,
``publish``, ``stream``), and ``await bus.request(CREATE_USER, body)`` validates
the reply as ``User`` without ``response_type=``.

``Endpoint[A, B]`` is a real subclass (made once and cached) that carries ``A``
and ``B`` as ``__request_type__`` and ``__response_type__``: an instance cannot
hold them, since a ``str`` subclass with ``__slots__`` has nowhere to put the
``__orig_class__`` that ``typing`` would otherwise set.

To type checkers an ``Endpoint`` is *not* a ``str``. Were it one, a body of the
wrong type would fail ``request()``'s Endpoint overload and then silently match
its untyped ``str`` overload; as it is, mypy reports the wrong body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar


class TypedAddress(str):
    """A ``str`` address that also names the type of its replies (see ``Endpoint``)."""

    __slots__ = ()
    __response_type__: Any = None


# An endpoint that accepts any body can stand where one accepting a User is
# expected, and one replying a User where one replying a BaseModel is.
Req = TypeVar("Req", contravariant=True)
Resp = TypeVar("Resp", covariant=True)

_bound: dict[tuple[type, Any, Any], type[_Endpoint[Any, Any]]] = {}


class _Endpoint(TypedAddress, Generic[Req, Resp]):
    """An address typed with its request and reply: ``Endpoint[CreateUser, User]("users.create")``."""

    __slots__ = ()
    __request_type__: Any = None
    __response_type__: Any = None

    def __class_getitem__(cls, params: Any) -> Any:
        # typing's alias checks the number of parameters and gives ``Endpoint[Req, R]``
        # for annotations; concrete types get a subclass that remembers them.
        alias = super().__class_getitem__(params)  # type: ignore[misc]
        if alias.__parameters__ or cls.__request_type__ is not None or cls.__response_type__ is not None:
            return alias
        req, resp = alias.__args__
        key = (cls, req, resp)
        try:
            return _bound[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable type argument: build it every time
            return _bind(cls, req, resp)
        bound = _bound[key] = _bind(cls, req, resp)
        return bound

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({str.__repr__(self)})"

    def __reduce__(self) -> tuple[Any, ...]:
        cls = type(self)
        origin = cls.__dict__.get("__endpoint_origin__")
        if origin is None:
            return cls, (str(self),)
        return _rebuild, (origin, cls.__request_type__, cls.__response_type__, str(self))


def _bind(cls: type[_Endpoint[Any, Any]], req: Any, resp: Any) -> type[_Endpoint[Any, Any]]:
    name = f"{cls.__qualname__}[{_type_name(req)}, {_type_name(resp)}]"
    namespace = {
        "__slots__": (),
        "__module__": cls.__module__,
        "__qualname__": name,
        "__request_type__": req,
        "__response_type__": resp,
        "__endpoint_origin__": cls,
    }
    return type(name, (cls,), namespace)


def _rebuild(origin: Any, req: Any, resp: Any, value: str) -> _Endpoint[Any, Any]:
    """Unpickle an ``Endpoint[A, B]`` instance (its class is made at runtime, so has no importable name)."""
    endpoint: _Endpoint[Any, Any] = origin[req, resp](value)
    return endpoint


def _type_name(tp: Any) -> str:
    if tp is None or tp is type(None):
        return "None"
    if isinstance(tp, type) and not getattr(tp, "__args__", None):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


if TYPE_CHECKING:

    class Endpoint(Generic[Req, Resp]):
        """An address typed with its request and reply: ``Endpoint[CreateUser, User]("users.create")``.

        A ``str`` at runtime; see the module docstring for why type checkers
        are told otherwise. Use ``str(endpoint)`` where a ``str`` is required.
        """

        __request_type__: Any
        __response_type__: Any

        def __init__(self, address: str, /) -> None: ...

else:
    Endpoint = _Endpoint
    Endpoint.__name__ = Endpoint.__qualname__ = "Endpoint"
