"""The sans-I/O core of ACME: messages, problems, statuses, JWS/JWK, challenge helpers.

Nothing here opens a socket, reads a clock or touches a file. Both the client and the
server import this package; it imports nothing else of ours.
"""
