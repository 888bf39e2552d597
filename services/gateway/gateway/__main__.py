from gateway.app import create_app
from shopkit.serve import serve

# The gateway faces clients: it decides their address itself (SHOP_TRUSTED_PROXIES), never uvicorn.
serve(create_app, name="gateway", default_port=8000, proxy_headers=False)  # type: ignore[arg-type]
