from fake_stages import SECOND as STAGE  # noqa: F401
