"""Chinese (中文) greetings for greeter: ``greeter --driver chinese`` prints ``你好宇宙``."""

from greeter_core import DEFAULT_NAME, Greeter

__all__ = ["ChineseGreeter"]


class ChineseGreeter(Greeter):
    """Greets in Chinese; the default greetee, the Universe, is translated."""

    language = "Chinese (中文)"
    api_version = 1  # the plugin API this was written for (greeter_core.API_VERSION)

    def greet(self, name: str) -> str:
        if not name or name == DEFAULT_NAME:
            return "你好宇宙"
        return f"你好，{name}"
