# The subscriber of autobus's README (its "Synopsis"): github.com/schuyler/autobus, README.md.
# Copyright 2023 Schuyler Erle. MIT License: see LICENSE-autobus.md beside this file.
# Changed: `import autobus` became `import addrbus as autobus`. Added, as glue the
# README leaves undefined: the MyEventClass definition, and a print as the "something"
# the handler does. tests/test_autobus_readme.py runs it in a process of its own
# (ADDRBUS_URL chooses the bus, as no url= means autobus's multicast group).
# ruff: noqa: F401, I001 -- the README's imports, as the README writes them
import addrbus as autobus
import asyncio


class MyEventClass(autobus.Event):  # glue
    message: str


@autobus.subscribe(MyEventClass)
def handle_my_event(event):
    # do something in response
    print(f"handled {event.message}")  # glue: the README's `...`

autobus.run()
