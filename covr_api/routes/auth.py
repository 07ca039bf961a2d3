"""Register, log in, refresh, log out, and claim an account that ingest created."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from covr_api.deps import CurrentUser, DbDep, client_address
from covr_api.errors import problems
from covr_api.schemas.accounts import AccountClaim, TokenRefresh, TokensPublic, UserLogin, UserPrivate, UserRegister
from covr_core.contact import accounts

router = APIRouter(prefix="/auth", tags=["auth"])


def _tokens(t: accounts.Tokens) -> TokensPublic:
    return TokensPublic(access_token=t.access_token, refresh_token=t.refresh_token, expires_in=t.expires_in,
                        user_id=t.user_id)


@router.post("/register", status_code=201, response_model=UserPrivate, responses=problems(409, 422))
def register(body: UserRegister, db: DbDep):
    """Create an account with a password. A handle ingest already created is claimed instead (/auth/claim)."""
    return accounts.register(db, handle=body.handle, display_name=body.display_name, password=body.password,
                             email=body.email)


@router.post("/login", response_model=TokensPublic, responses=problems(401, 422, 429))
def login(body: UserLogin, db: DbDep, request: Request):
    """Exchange handle and password for an access token (short-lived) and a refresh token (revocable)."""
    t = accounts.login(db, handle=body.handle, password=body.password, address=client_address(request),
                       tokens=request.app.state.token_policy, limits=request.app.state.login_policy)
    return _tokens(t)


@router.post("/refresh", response_model=TokensPublic, responses=problems(401, 422))
def refresh(body: TokenRefresh, db: DbDep, request: Request):
    """A new token pair; the refresh token used here stops working."""
    return _tokens(accounts.refresh(db, refresh_token=body.refresh_token, tokens=request.app.state.token_policy))


@router.post("/logout", status_code=204, responses=problems(401))
def logout(db: DbDep, user: CurrentUser) -> Response:
    """End this session: its refresh token and its access tokens are refused from now on."""
    accounts.logout(db, user)
    return Response(status_code=204)


@router.post("/claim", response_model=UserPrivate, responses=problems(401, 409, 422))
def claim(body: AccountClaim, db: DbDep):
    """Set the first password of a member ingest created, with the code from `covr users claim-code`."""
    return accounts.claim(db, handle=body.handle, code=body.code, password=body.password, email=body.email,
                          display_name=body.display_name)
