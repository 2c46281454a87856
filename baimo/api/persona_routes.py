"""Persona routes under /api/personas: CRUD, and each persona's usage report ("salary slip").

Every route sees only the caller's personas (another owner's is a 404 like a missing one); admins see all."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from baimo.api.deps import principal, state
from baimo.api.schemas import PersonaCreate, PersonaFields
from baimo.api.state import AppState
from baimo.metering.principal import Principal

router = APIRouter(tags=["personas"], dependencies=[Depends(principal)])


@router.get("/api/personas", summary="List personas")
async def list_personas(s: AppState = Depends(state), who: Principal = Depends(principal)) -> dict[str, Any]:
    return {"object": "list", "data": [p.to_dict() for p in s.personas.list(who=who)]}


@router.post("/api/personas", status_code=201, summary="Create a persona (callable as persona/<name>)")
async def create_persona(body: PersonaCreate, s: AppState = Depends(state),
                         who: Principal = Depends(principal)) -> dict[str, Any]:
    fields = body.model_dump(exclude_none=True, exclude={"name"})
    return s.personas.create(body.name, who=who, **fields).to_dict()


@router.get("/api/personas/{name}", summary="Describe a persona")
async def get_persona(name: str, s: AppState = Depends(state), who: Principal = Depends(principal)) -> dict[str, Any]:
    return s.personas.get(name, who=who).to_dict()


@router.patch("/api/personas/{name}", summary="Change some of a persona's fields")
async def update_persona(name: str, body: PersonaFields, s: AppState = Depends(state),
                         who: Principal = Depends(principal)) -> dict[str, Any]:
    return s.personas.update(name, who=who, **body.model_dump(exclude_unset=True)).to_dict()


@router.delete("/api/personas/{name}", summary="Delete a persona (its usage records stay)")
async def delete_persona(name: str, s: AppState = Depends(state),
                         who: Principal = Depends(principal)) -> dict[str, Any]:
    s.personas.delete(name, who=who)
    return {"object": "persona", "name": name, "deleted": True}


@router.get("/api/personas/{name}/usage", summary="A persona's requests, tokens, cost and share per model")
async def persona_usage(name: str, s: AppState = Depends(state), who: Principal = Depends(principal)) -> dict[str, Any]:
    persona = s.personas.get(name, who=who)
    return {**s.usage.persona_report(persona.name, persona.owner), "budget_usd": persona.budget_usd}
