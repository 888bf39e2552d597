from auth.app import create_app
from shopkit.serve import serve

serve(create_app, name="auth", default_port=8001)
