from shopkit.serve import serve

from auth.app import create_app

serve(create_app, name="auth", default_port=8001)
