from fake_stages import passthrough

STAGE = passthrough("cyclegan")
