"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives, with fault switches.

::

    with FakeSmtpServer() as smtp:
        send(host=smtp.host, port=smtp.port)
        assert smtp.messages[0].message["Subject"] == ...
        smtp.refuse("data", "554 5.6.0 Message rejected", times=1)  # next DATA is refused
        smtp.delay_reply(2.0)  # keep the message, then answer late (client timeout: ambiguous)
"""
from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

Stage = Literal["helo", "mail", "rcpt", "data"]


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    message: EmailMessage


@dataclass
class _Refusal:
    stage: Stage
    reply: str
    times: int | None  # None: until cleared


def free_port(host: str = "127.0.0.1") -> int:
    # aiosmtpd's Controller probes host:port after starting, so port 0 cannot be used directly.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class FakeSmtpServer:
    """aiosmtpd in a background thread; ``messages`` lists every accepted message."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.messages: list[ReceivedMessage] = []
        self.transactions = 0  # DATA commands seen, accepted or not
        self._refusals: list[_Refusal] = []
        self._reply_delay = 0.0
        self._lock = threading.Lock()
        self.controller = Controller(self, hostname=host, port=self.port, ready_timeout=10.0)

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> FakeSmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> FakeSmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- fault injection ----------------------------------------------------------
    def refuse(self, stage: Stage = "data", reply: str = "554 5.7.1 Message refused (fake)",
               times: int | None = 1) -> None:
        """Answer the next ``times`` ``stage`` commands with ``reply`` (e.g. ``421 ...`` or ``554 ...``)."""
        with self._lock:
            self._refusals.append(_Refusal(stage, reply, times))

    def delay_reply(self, seconds: float) -> None:
        """Store each message, then wait ``seconds`` before the 250: a late answer after acceptance."""
        self._reply_delay = seconds

    def clear(self) -> None:
        with self._lock:
            self._refusals.clear()
            self.messages.clear()
            self.transactions = 0
        self._reply_delay = 0.0

    def _refusal(self, stage: Stage) -> str | None:
        with self._lock:
            for refusal in self._refusals:
                if refusal.stage == stage and (refusal.times is None or refusal.times > 0):
                    if refusal.times is not None:
                        refusal.times -= 1
                    return refusal.reply
        return None

    # -- aiosmtpd handler hooks ---------------------------------------------------
    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        if (reply := self._refusal("helo")) is not None:
            return [reply]
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        if (reply := self._refusal("helo")) is not None:
            return reply
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        if (reply := self._refusal("mail")) is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if (reply := self._refusal("rcpt")) is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.transactions += 1
        if (reply := self._refusal("data")) is not None:
            return reply
        data: Any = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8")
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        with self._lock:
            self.messages.append(ReceivedMessage(str(envelope.mail_from), list(envelope.rcpt_tos), data,
                                                 parsed))  # type: ignore[arg-type]
        if self._reply_delay:
            await asyncio.sleep(self._reply_delay)
        return "250 Message accepted for delivery"
