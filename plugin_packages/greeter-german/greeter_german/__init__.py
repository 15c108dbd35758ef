"""German (Deutsch) greetings for greeter: ``greeter --driver german`` prints ``Hallo Universum``."""

from greeter_core import DEFAULT_NAME, Greeter

__all__ = ["GermanGreeter"]


class GermanGreeter(Greeter):
    """Greets in German; the default greetee, the Universe, is translated."""

    language = "German (Deutsch)"
    api_version = 1  # the plugin API this was written for (greeter_core.API_VERSION)

    def greet(self, name: str) -> str:
        if not name or name == DEFAULT_NAME:
            return "Hallo Universum"
        return f"Hallo {name}"
