"""Who the API backend is to the server, and which secrets must never be shown."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from proctor.config.schema import ApiModelConfig


@dataclass(frozen=True)
class Credentials:
    """The API key (with a secret-free word on its source) and any user:password of api_base."""

    key: str | None = field(repr=False)
    key_source: str
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @classmethod
    def resolve(cls, config: ApiModelConfig, username: str = "", password: str = "") -> Credentials:
        """The key from the config, else from its environment variable; URL credentials kept."""
        if config.api_key is not None:
            value = config.api_key.get_secret_value()
            if value:
                return cls(value, "the api_key of the model config", username, password)
        env = config.api_key_env
        value = os.environ.get(env, "") if env else ""
        return cls(value or None, f"${env}", username, password)

    def authorization(self) -> str | None:
        """The Authorization header: Bearer with a key, else Basic with URL credentials."""
        if self.key:
            return f"Bearer {self.key}"
        if self.username or self.password:
            token = base64.b64encode(f"{self.username}:{self.password}".encode("utf-8"))
            return f"Basic {token.decode('ascii')}"
        return None

    def redact(self, text: str) -> str:
        """Remove the API key, any api_base password (plain, percent- or base64-encoded, as a
        server may echo the Authorization header back), any part of 8+ characters of them, and
        any `Basic`/`Bearer` credential from text that came from a server."""
        from proctor.config.secrets import mask_auth, mask_secrets

        return mask_auth(mask_secrets(text, self._secrets()))

    def redact_output(self, text: str | None) -> str | None:
        """A model's answer with any part of 8+ characters of a secret masked (a server or proxy
        that echoes the key into the reply must not put it in predictions); text without one
        is returned as it is. Not mask_auth: an answer may show `Bearer <TOKEN>` in code."""
        from proctor.config.secrets import SECRET_PART_MIN, mask_secrets

        if not text:
            return text
        secrets = self._secrets()
        folded = text.lower()
        if not any(s.lower()[i: i + SECRET_PART_MIN] in folded
                   for s in secrets for i in range(max(1, len(s) - SECRET_PART_MIN + 1))):
            return text
        return mask_secrets(text, secrets)

    def _secrets(self) -> list[str]:
        found = [s for s in (self.key, self.password) if s]
        if self.password:
            found.append(quote(self.password, safe=""))
        if self.username or self.password:
            token = base64.b64encode(f"{self.username}:{self.password}".encode("utf-8")).decode()
            found += [token, token.rstrip("=")]
        # Longest first, so that a secret holding another is replaced whole.
        return sorted({s for s in found if s}, key=len, reverse=True)


def split_credentials(url: str) -> tuple[str, str, str]:
    """(url without user:password@, user, password), the last two percent-decoded."""
    parts = urlsplit(url)
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, unquote(parts.username or ""), unquote(parts.password or "")

