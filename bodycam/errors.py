"""The project's error root and the few kinds the HTTP layer maps to status codes."""

from __future__ import annotations


class BodycamError(Exception):
    """Base of every error bodycam raises on purpose; the message is meant for a person."""

    status = 500


class ConfigError(BodycamError):
    """A configuration file or variable is invalid; the message names the key."""


class BadRequest(BodycamError):
    """The request cannot be understood (malformed SDP, bad parameter)."""

    status = 400


class Unauthorized(BodycamError):
    """No credentials, or credentials that identify nobody."""

    status = 401


class Forbidden(BodycamError):
    """Known caller, not allowed (revoked device, role without the right)."""

    status = 403


class NotFound(BodycamError):
    """The named resource does not exist."""

    status = 404


class Conflict(BodycamError):
    """The request clashes with the current state (a device already live)."""

    status = 409


class PayloadTooLarge(BodycamError):
    """The body is over the configured limit."""

    status = 413


class UnsupportedMediaType(BodycamError):
    """The body is not of the content type the endpoint accepts."""

    status = 415


class TooManyRequests(BodycamError):
    """The gateway is refusing more of this kind of request for now."""

    status = 429


class Unprocessable(BodycamError):
    """Well-formed but unusable (an SDP offer without video)."""

    status = 422
