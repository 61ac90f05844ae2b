"""Rendering a page: the template plus what every page needs (who is logged in, CSRF)."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from chat.keys import SETTINGS
from chat.web import auth


async def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    page = {
        "current_user": await auth.current_user(request),
        "csrf_token": await auth.csrf_token(request),
        "csrf_field": auth.CSRF_FIELD,
        "instance_name": request.app[SETTINGS].instance_name,
        **context,
    }
    return aiohttp_jinja2.render_template(template, request, page, status=status)
