"""The engine: handlers and their backlogs, routing, requests, membership, streams and inbound frames."""
