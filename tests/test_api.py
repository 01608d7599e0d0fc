"""The public surface: what ``import addrbus`` offers, and only that."""

from __future__ import annotations

import inspect

import addrbus


def test_all_is_sorted_and_complete() -> None:
    assert addrbus.__all__ == sorted(addrbus.__all__)
    public = {
        name
        for name, value in vars(addrbus).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(addrbus.__all__)


def test_every_exported_name_exists() -> None:
    for name in addrbus.__all__:
        assert getattr(addrbus, name) is not None, name


def test_exception_tree() -> None:
    assert issubclass(addrbus.RequestTimeout, TimeoutError)
    assert issubclass(addrbus.ConfigError, ValueError)
    for error in (addrbus.NoHandlers, addrbus.RequestTimeout, addrbus.RecipientFailure, addrbus.RecipientGone,
                  addrbus.BusStopped):
        assert issubclass(error, addrbus.ReplyError)
    for error in (addrbus.ReplyError, addrbus.TransportError, addrbus.ConfigError, addrbus.BusNotRunning):
        assert issubclass(error, addrbus.BusError)
    assert issubclass(addrbus.MessageTooLarge, addrbus.TransportError)
    too_large = addrbus.MessageTooLarge(70_000, 65_507, "udp")
    assert (too_large.size, too_large.limit) == (70_000, 65_507)
    assert "redis://" in str(too_large)


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("addrbus").joinpath("py.typed").is_file()
