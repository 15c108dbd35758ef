"""English greetings for greeter: ``greeter --driver english`` prints ``Hello Universe``."""

from greeter_core import DEFAULT_NAME, Greeter

__all__ = ["EnglishGreeter"]


class EnglishGreeter(Greeter):
    """Greets in English; ``--option punctuation=!`` ends the greeting with it."""

    language = "English"
    api_version = 1  # the plugin API this was written for (greeter_core.API_VERSION)

    def greet(self, name: str) -> str:
        return f"Hello {name or DEFAULT_NAME}{self.context.config.get('punctuation', '')}"
