"""Admin actions over HTTP: approve or rerun a submission, hide, show or delete an entry.

Every route needs the admin token (`medboard serve --admin-token`, or MEDBOARD_ADMIN_TOKEN) in
an `Authorization: Bearer <token>` header; without a configured token the routes answer 403.
"""

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi import Path as PathParam

from medboard.queue import admin

router = APIRouter(prefix="/api/admin", tags=["admin"])


def _authorize(request: Request, authorization: str | None) -> None:
    """The header must be `Bearer <token>` (the scheme's case is free, as RFC 7235 has it): a
    bare token, another scheme or a wrong token is 401, compared in constant time."""
    token = request.app.state.admin_token
    if not token:
        raise HTTPException(403, "admin actions are off (start the server with --admin-token)")
    scheme, _, given = (authorization or "").partition(" ")
    # compared as bytes: a header may hold any latin-1 text, which compare_digest's str refuses
    matches = hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode())
    if scheme.lower() != "bearer" or not matches:
        raise HTTPException(
            401,
            "a valid admin token is needed (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _act(request: Request, action: Any, *args: Any) -> Any:
    try:
        result = action(request.app.state.database, *args)
    except admin.AdminError as exc:
        status = 404 if str(exc).startswith("no ") else 409
        raise HTTPException(status, str(exc)) from None
    request.app.state.cache.invalidate()  # the board shows the change at once
    return result


Auth = Annotated[str | None, Header()]
# Ids beyond a 32-bit integer cannot exist (SQLite cannot even compare them): not found.
SubmissionId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
EntryId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


@router.post("/submissions/{submission_id}/approve")
def approve(
    request: Request, submission_id: SubmissionId, authorization: Auth = None
) -> dict[str, Any]:
    """Admin: let a submission that waits for approval be taken by workers."""
    _authorize(request, authorization)
    job = _act(request, admin.approve, submission_id)
    return {"id": job.id, "approved": job.approved, "status": job.status}


@router.post("/submissions/{submission_id}/rerun")
def rerun(
    request: Request, submission_id: SubmissionId, authorization: Auth = None
) -> dict[str, Any]:
    """Admin: queue a finished or failed submission again, or let one waiting for its model
    server or the Hub be tried now."""
    _authorize(request, authorization)
    job = _act(request, admin.rerun, submission_id)
    return {"id": job.id, "status": job.status}


@router.post("/entries/{entry_id}/hide")
def hide(
    request: Request, entry_id: EntryId, hidden: bool = True, authorization: Auth = None
) -> dict[str, Any]:
    """Admin: hide an entry from the board, or show it again (hidden=false)."""
    _authorize(request, authorization)
    entry = _act(request, admin.hide, entry_id, hidden)
    return {"id": entry.id, "hidden": entry.hidden}


@router.delete("/entries/{entry_id}")
def delete(request: Request, entry_id: EntryId, authorization: Auth = None) -> dict[str, Any]:
    """Admin: delete an entry and its scores (its runs stay: the record of what ran)."""
    _authorize(request, authorization)
    _act(request, admin.delete, entry_id)
    return {"id": entry_id, "deleted": True}
