"""autobus's own test suite, run against addrbus (``import addrbus as autobus``)."""
