"""The domain's exceptions. Each message is one sentence naming the thing and the fix."""

from __future__ import annotations


class PiperError(Exception):
    """Base class: an operation was refused or could not run; the message says why and what to do."""

    #: Exit code the edge (task or script) turns this into: 1 refused/failed, 2 bad usage or input.
    exit_code = 1


class UsageError(PiperError):
    """Bad input from the user: an unknown environment, a malformed flag value, a missing file."""

    exit_code = 2


class ProfileError(UsageError):
    """An environment profile is missing, malformed or fails validation."""


class ClusterError(PiperError):
    """The PostgreSQL server of an environment could not be provisioned, started or stopped."""


class EnvironmentMismatchError(PiperError):
    """A database belongs to another environment than the selected profile (invariant 1)."""


class ConfirmationRequired(PiperError):
    """A destructive operation needs an explicit yes that was not given."""


class AuditError(UsageError):
    """The personal-data audit could not run: a bad rule, allowlist or unreadable file (exit 2)."""


class PersonalDataRefused(PiperError):
    """Content the audit flags was about to be written to a path that git tracks (invariant 3)."""
