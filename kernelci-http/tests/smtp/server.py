"""A real SMTP server for kernelci-http's e-mail tests (aiosmtpd from PyPI).

Listens on three loopback ports, all with the same certificate and login:

- STARTTLS: plain greeting, STARTTLS offered and required before AUTH and MAIL;
- TLS: implicit TLS from the first byte (SMTPS, what port 465 speaks);
- PLAIN: no TLS at all (STARTTLS never offered), to check that a client that
  requires TLS does not fall back to plaintext.

Every accepted message is appended to OUT as one JSON line: the port it came in
on, whether the session was encrypted, the login used, the envelope and the raw
message. The ports are printed as one JSON line on standard output once all three
listen; the server runs until its standard input closes (so a test that dies
takes it down).

Usage: server.py CERT KEY LOGIN PASSWORD OUT
"""

import asyncio
import json
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main():
    # aiosmtpd warns about its own use of a deprecated attribute on every login.
    warnings.simplefilter("ignore", DeprecationWarning)
    cert, key, login, password, out = sys.argv[1:6]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == login
            and auth_data.password.decode() == password
        )
        if ok:
            session.kci_login = login
        return AuthResult(success=ok, handled=False)

    def login_of(session):
        return getattr(session, "kci_login", None)

    class Handler:
        def __init__(self, name):
            self.name = name

        async def handle_DATA(self, server, session, envelope):
            record = {
                "listener": self.name,
                "encrypted": server.transport.get_extra_info("ssl_object") is not None,
                "login": login_of(session),
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "data": envelope.content.decode("utf-8", "replace"),
            }
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            return "250 OK"

    def factory(name, **kwargs):
        return lambda: SMTP(
            Handler(name),
            authenticator=authenticator,
            hostname="kernelci-test-smtp",
            **kwargs,
        )

    loop = asyncio.new_event_loop()
    starttls = loop.run_until_complete(
        loop.create_server(
            factory("starttls", tls_context=context, require_starttls=True),
            "127.0.0.1",
            0,
        )
    )
    implicit = loop.run_until_complete(
        loop.create_server(
            factory("tls", auth_require_tls=False),
            "127.0.0.1",
            0,
            ssl=context,
        )
    )
    plain = loop.run_until_complete(
        loop.create_server(factory("plain"), "127.0.0.1", 0)
    )
    ports = {
        "starttls": starttls.sockets[0].getsockname()[1],
        "tls": implicit.sockets[0].getsockname()[1],
        "plain": plain.sockets[0].getsockname()[1],
    }
    print(json.dumps(ports), flush=True)
    stop = loop.create_future()

    def on_stdin():
        if not stop.done() and sys.stdin.buffer.read1(1) == b"":
            stop.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    loop.run_until_complete(stop)


if __name__ == "__main__":
    main()
