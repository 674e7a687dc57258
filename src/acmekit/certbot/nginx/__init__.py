"""certbot's `--nginx` plugin: http-01 answered by the running nginx, and the
certificate installed into the server blocks that serve its names.

- `parser`: nginx's configuration language read into directives that keep their
  offsets in the source, so an edit is a splice and everything else stays byte for byte.
- `vhosts`: server blocks, their `listen` and `server_name`, and the block nginx picks
  for a name on a port (the rules of nginx's server_name documentation).
- `backup`: a copy of every file before it is edited, and the rollback.
- `control`: `nginx -t`, reload, and the wait for the new workers.
- `authenticator`: the http-01 solver; `installer`: ssl_certificate, listen, redirect.
"""
