"""stevedore's ``list-plugins`` directive, told which plugins greeter's policy disables.

stevedore's own directive (``stevedore.sphinxext``) builds an ``ExtensionManager``
over the whole namespace, which imports every plugin to read its docstring: a
docs build would run the code of a plugin that ``GREETER_DISABLE`` or
``GREETER_PLUGINS`` turned off. This directive asks stevedore's
``NamedExtensionManager`` for the allowed names only (it checks a name before
it loads anything) and renders them with stevedore's own code; a disabled
plugin is still listed, after them, marked with the setting that disabled it
and without its documentation, since reading that would mean importing it.

The policy comes from the environment of the build, as for any greeter command.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.nodes import nested_parse_with_titles
from stevedore import named, sphinxext

import greeter_core
from greeter_core.api import GROUP
from greeter_core.policy import PluginPolicy

LOG = logging.getLogger(__name__)


class PolicyListPluginsDirective(sphinxext.ListPluginsDirective):
    """``.. list-plugins:: greeter.plugins``, importing only what the policy allows."""

    def run(self) -> list[nodes.Node]:
        namespace = " ".join(self.content).strip()
        if namespace != GROUP:
            return list(super().run())
        policy = PluginPolicy.from_settings() or PluginPolicy()
        installed = sorted({plugin.name for plugin in greeter_core.discover()})
        disabled = {name: setting for name in installed if (setting := policy.disabled_by(name)) is not None}
        LOG.info("documenting plugins from %r, except the disabled %s", namespace, sorted(disabled))

        def report_load_failure(manager: Any, entry_point: Any, error: BaseException) -> None:
            LOG.warning("Failed to load %s: %s", entry_point.module, error)

        manager = named.NamedExtensionManager(
            namespace,
            names=[name for name in installed if name not in disabled],
            on_load_failure_callback=report_load_failure,
            on_missing_entrypoints_callback=None,
        )
        over = self.options.get("overline-style", "")
        under = self.options.get("underline-style", "=")
        if "detailed" in self.options:
            lines = list(sphinxext._detailed_list(manager, over, under, "titlecase" in self.options))
            for name, setting in sorted(disabled.items()):
                title = name.title() if "titlecase" in self.options else name
                lines += [(over * len(name), name)] if over else []
                lines += [(title, name), (under * len(name), name), ("\n", name)]
                lines += [(f"Disabled by ``{setting}`` where these docs were built: not imported, not shown.", name)]
                lines += [("\n", name)]
        else:
            lines = list(sphinxext._simple_list(manager))
            lines += [(f"* {name} -- disabled by ``{setting}``", name) for name, setting in sorted(disabled.items())]
        result = StringList()
        for text, source in lines:
            for line in text.splitlines():
                result.append(line, source)
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, result, node)
        return list(node.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("stevedore.sphinxext")
    app.add_directive("list-plugins", PolicyListPluginsDirective, override=True)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
