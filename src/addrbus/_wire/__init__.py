"""The wire: Message <-> envelope <-> bytes, and Fernet sealing (``shared_key=``)."""
