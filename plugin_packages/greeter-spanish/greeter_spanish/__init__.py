"""Spanish (español) greetings for greeter: ``greeter --driver spanish`` prints ``Hola Universo``."""

from greeter_core import DEFAULT_NAME, Greeter

__all__ = ["SpanishGreeter"]


class SpanishGreeter(Greeter):
    """Greets in Spanish; the default greetee, the Universe, is translated."""

    language = "Spanish (español)"
    api_version = 1  # the plugin API this was written for (greeter_core.API_VERSION)

    def greet(self, name: str) -> str:
        if not name or name == DEFAULT_NAME:
            return "Hola Universo"
        return f"Hola {name}"
