"""test_my_transport.py: addrbus's transport contract, run on your transport."""

from addrbus.testing.contract import BusContract


class TestMyTransport(BusContract):
    settle = 2.0  # seconds your nodes may take to learn each other's registrations

    def url(self) -> str:
        # Your transport's URL, called once per test; memory:// stands in for it here.
        return "memory://contract-demo"


if __name__ == "__main__":
    # Under pytest, `pytest test_my_transport.py` is all it takes; run as a script, this runs that.
    import subprocess
    import sys

    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]))
