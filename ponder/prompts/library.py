"""Loads and renders prompt templates.

Convention: a template is a `.j2` file named `<strategy>/<role>.j2` whose `{% block system %}`
and `{% block user %}` render the system and user messages (a block that renders empty is
left out; `{% block assistant %}` adds an assistant turn). A user's folder is searched first,
so a file there with the same relative name overrides the built-in one. The built-ins are
also reachable as `builtin/<strategy>/<role>.j2`, so an override may
`{% extends "builtin/<strategy>/<role>.j2" %}` to change one block only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ponder.core.errors import TemplateError
from ponder.core.types import Message, Role

if TYPE_CHECKING:  # jinja2 loads with the first library made, not with every strategy module
    import jinja2

BUILTIN_DIR = Path(__file__).parent / "templates"
BUILTIN_PREFIX = "builtin"
ROLES: tuple[Role, ...] = ("system", "user", "assistant")


class PromptLibrary:
    """Built-in templates, overridden by any file of the same name under `user_dir`.

    >>> PromptLibrary().render("single/answer.j2", problem="2+2?")[-1].role
    'user'
    """

    def __init__(self, user_dir: str | Path | None = None) -> None:
        import jinja2

        search = [str(BUILTIN_DIR)]
        if user_dir is not None:
            path = Path(user_dir)
            if not path.is_dir():
                raise TemplateError(f"templates folder {str(path)!r} does not exist")
            search.insert(0, str(path))
        self.user_dir = Path(user_dir) if user_dir is not None else None
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader([
                jinja2.FileSystemLoader(search),
                # An override extending the template it replaces would otherwise extend itself.
                jinja2.PrefixLoader({BUILTIN_PREFIX: jinja2.FileSystemLoader(str(BUILTIN_DIR))}),
            ]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            autoescape=False,
        )

    def names(self) -> list[str]:
        return sorted(n for n in self.env.list_templates()
                      if n.endswith(".j2") and not n.startswith(f"{BUILTIN_PREFIX}/"))

    def render(self, name: str, /, **variables: Any) -> list[Message]:
        """Render template `name` to chat messages; errors name the template, line and variable."""
        import jinja2

        name = name if name.endswith(".j2") else f"{name}.j2"
        try:
            template = self.env.get_template(name)
        except jinja2.TemplateNotFound as exc:
            where = f"{self.user_dir} or the built-ins" if self.user_dir else "the built-ins"
            raise TemplateError(f"template {name!r} not found in {where}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"template {exc.name or name!r} line {exc.lineno}: {exc.message}"
            ) from exc
        return _render_blocks(template, name, variables)


def _render_blocks(
    template: jinja2.Template, name: str, variables: Mapping[str, Any]
) -> list[Message]:
    import jinja2

    messages: list[Message] = []
    try:
        context = template.new_context(dict(variables))
        # Rendering the whole template runs any `{% extends %}`, which puts the parents' blocks
        # in `context.blocks` (most derived first): a child need not repeat what it inherits.
        whole = "".join(template.root_render_func(context)).strip()
        if not any(role in context.blocks for role in ROLES):
            return [Message(role="user", content=whole)]
        for role in ROLES:
            stack = context.blocks.get(role)
            if not stack:
                continue
            text = "".join(stack[0](context)).strip()
            if text:
                messages.append(Message(role=role, content=text))
    except jinja2.UndefinedError as exc:
        line = _error_line(exc, name)
        raise TemplateError(f"template {name!r} line {line}: {exc.message}") from exc
    if not messages:
        raise TemplateError(f"template {name!r} rendered no messages")
    return messages


def _error_line(exc: BaseException, name: str) -> str:
    """The template line an exception came from, mapped back from Jinja's compiled code."""
    tb, line = exc.__traceback__, "?"
    while tb is not None:
        template = tb.tb_frame.f_globals.get("__jinja_template__")
        if template is not None and (template.name or "").endswith(name):
            line = str(template.get_corresponding_lineno(tb.tb_lineno))
        tb = tb.tb_next
    return line
