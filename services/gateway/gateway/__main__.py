from gateway.app import create_app
from shopkit.serve import serve

serve(create_app, name="gateway", default_port=8000)  # type: ignore[arg-type]
