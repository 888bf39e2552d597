from payments.app import create_app
from shopkit.serve import serve

serve(create_app, name="payments", default_port=8004)
