"""Publishing to the Hugging Face Hub: a built dataset folder (``dataset``) and scored adapters
(``adapter``), each in one commit made with ``medinjection.core.hub``."""
