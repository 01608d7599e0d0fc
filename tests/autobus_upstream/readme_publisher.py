# The publisher of autobus's README (its "Synopsis"): github.com/schuyler/autobus, README.md.
# Copyright 2023 Schuyler Erle. MIT License: see LICENSE-autobus.md beside this file.
# The README shows only the last three lines; the import is autobus's, changed to
# `import addrbus as autobus`. Added, as glue the README leaves undefined: the
# MyEventClass definition and the event's field. tests/test_autobus_readme.py runs it
# in a process of its own (ADDRBUS_URL chooses the bus, as in readme_subscriber.py).
import addrbus as autobus


class MyEventClass(autobus.Event):  # glue
    message: str


event = MyEventClass(message="hello from the publisher")  # glue: the README's `...`
autobus.publish(event)
autobus.run()
