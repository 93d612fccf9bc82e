# TLS client context for the broker link: our device certificate (EC P-256), the provisioned CA, and
# certificate verification required. The caller passes server_hostname when wrapping, so the broker's name
# is checked too.
import ssl


def client_context(key_der, cert_der, ca_der):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(cert_der, key_der)
    ctx.load_verify_locations(cadata=ca_der)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
