"""Accounts on the wire: registration, login, tokens, claims and the public view of a member."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class UserRegister(_In):
    handle: str = Field(min_length=1, max_length=63, examples=["alice"])
    display_name: str = Field(min_length=1, max_length=200, examples=["Alice Liddell"])
    email: EmailStr | None = None
    password: str = Field(min_length=10, max_length=1024)


class UserLogin(_In):
    handle: str = Field(min_length=1, max_length=63)
    password: str = Field(min_length=1, max_length=1024)


class TokenRefresh(_In):
    refresh_token: str = Field(min_length=1, max_length=512)


class AccountClaim(_In):
    handle: str = Field(min_length=1, max_length=63)
    code: str = Field(min_length=1, max_length=64, description="The one-time code from `covr users claim-code`")
    password: str = Field(min_length=10, max_length=1024)
    email: EmailStr | None = None
    display_name: str | None = Field(default=None, min_length=1, max_length=200)


class TokensPublic(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    user_id: UUID


class UserPublic(BaseModel):
    user_id: UUID
    handle: str
    display_name: str
    created_at: datetime


class UserPrivate(UserPublic):
    """What a member sees of themselves."""

    email: str | None
