"""A digest channel for tests of the digest step without SMTP or Slack: it keeps what it was sent.

It is a real :class:`Channel` (the digest step cannot tell it from email or Slack), and
it can be told to refuse (``NotDelivered``: nothing went out) or to fail ambiguously
(the message went out, the answer was lost) on its next sends.
"""
from __future__ import annotations

from include.living_review.digest.channels import Channel
from include.living_review.digest.content import Digest
from include.living_review.digest.delivery import NotDelivered


class LostAnswer(TimeoutError):
    """The digest was handed over, then the connection died: an ambiguous failure."""


class RecordingChannel(Channel):
    def __init__(self, name: str = "email"):
        self.name = name
        self.sent: list[Digest] = []  # what reached the recipients, including a lost-answer send
        self._faults: list[str] = []

    def refuse(self, times: int = 1) -> None:
        self._faults += ["refuse"] * times

    def lose_answer(self, times: int = 1) -> None:
        self._faults += ["lose"] * times

    def send(self, digest: Digest) -> str:
        fault = self._faults.pop(0) if self._faults else None
        if fault == "refuse":
            raise NotDelivered(f"{self.name} refused the digest (test)")
        self.sent.append(digest)
        if fault == "lose":
            raise LostAnswer(f"{self.name} took the digest but the answer was lost (test)")
        return f"{self.name} got {digest.key12}"

    def work_ids(self) -> list[list[str]]:
        return [sorted(d.work_ids) for d in self.sent]
