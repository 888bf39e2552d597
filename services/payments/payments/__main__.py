from shopkit.serve import serve

from payments.app import create_app

serve(create_app, name="payments", default_port=8004)
