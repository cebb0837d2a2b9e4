from fake_stages import FIRST as STAGE  # noqa: F401
