/*
 * oxilink_identity: a Mosquitto 2.0 plugin that binds every MQTT identity to its TLS client certificate.
 *
 * Mosquitto's use_identity_as_username takes the username from the certificate's CN but lets the client
 * pick any client id, so one device certificate could connect with the receiver's client id and take over
 * its persistent session (docs/broker.md). With this plugin (and without use_identity_as_username):
 *
 *   CONNECT   (MOSQ_EVT_BASIC_AUTH) a client with a certificate gets its CN as username (whatever it sent),
 *             and its client id must be "<CN>" or "<CN>/<suffix>", else CONNACK "not authorised". A CN that
 *             is empty, repeated, or holds a NUL or one of / + # is refused. A client without a certificate
 *             (only on a plain listener, which only tests have) is left to allow_anonymous, but may not
 *             use a client id in a privileged identity's namespace.
 *   SUBSCRIBE (MOSQ_EVT_ACL_CHECK) only the privileged identities may subscribe at all (SUBACK "not
 *             authorised" for anyone else); what they may read is then the acl_file's business.
 *   other ACL checks are deferred to the acl_file.
 *
 *   plugin /path/to/oxilink_identity.so
 *   plugin_opt_subscribers oxilink-receiver      (space-separated CNs; default oxilink-receiver)
 *
 * Built by `make broker-plugin` against Debian's mosquitto-dev headers and libssl.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define MAX_SUBSCRIBERS 8
#define MAX_NAME 64

static mosquitto_plugin_id_t *plugin_id;
static char subscribers[MAX_SUBSCRIBERS][MAX_NAME + 1];
static int subscriber_count;

static int is_subscriber(const char *name)
{
	for(int i = 0; i < subscriber_count; i++){
		if(name && !strcmp(name, subscribers[i])) return 1;
	}
	return 0;
}

/* Client id `id` lies in identity `name`'s namespace: "name" or "name/<at least one character>". */
static int in_namespace(const char *id, const char *name)
{
	size_t n = strlen(name);
	if(strncmp(id, name, n)) return 0;
	return id[n] == '\0' || (id[n] == '/' && id[n + 1] != '\0');
}

/* The certificate's single CN as a NUL-terminated UTF-8 string in out, or 0 if there is none or it is unusable. */
static int certificate_cn(X509 *cert, char *out, size_t size)
{
	X509_NAME *subject = X509_get_subject_name(cert);
	if(!subject) return 0;
	int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	if(i < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, i) >= 0) return 0;
	unsigned char *utf8 = NULL;
	int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
	int ok = len > 0 && (size_t)len < size && strlen((char *)utf8) == (size_t)len
		&& !strpbrk((char *)utf8, "/+#");
	if(ok) memcpy(out, utf8, (size_t)len + 1);
	OPENSSL_free(utf8);
	return ok;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *id = mosquitto_client_id(ed->client);
	char cn[MAX_NAME + 1];
	(void)event;
	(void)userdata;

	if(!id) id = "";
	X509 *cert = mosquitto_client_certificate(ed->client);
	if(!cert){
		for(int i = 0; i < subscriber_count; i++){
			if(in_namespace(id, subscribers[i])){
				mosquitto_log_printf(MOSQ_LOG_NOTICE, "oxilink_identity: refused client id '%s' without a "
						"certificate: it belongs to %s", id, subscribers[i]);
				return MOSQ_ERR_AUTH;
			}
		}
		return MOSQ_ERR_PLUGIN_DEFER; /* plain listener: allow_anonymous decides */
	}
	int have_cn = certificate_cn(cert, cn, sizeof(cn));
	X509_free(cert);
	if(!have_cn){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "oxilink_identity: refused client id '%s': the certificate has no "
				"usable CN (one, 1..%d characters, no NUL / + #)", id, MAX_NAME);
		return MOSQ_ERR_AUTH;
	}
	if(!in_namespace(id, cn) || strpbrk(id, "+#")){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "oxilink_identity: refused client id '%s' for certificate CN '%s' "
				"(must be '%s' or '%s/<suffix>')", id, cn, cn, cn);
		return MOSQ_ERR_AUTH;
	}
	if(mosquitto_set_username(ed->client, cn) != MOSQ_ERR_SUCCESS) return MOSQ_ERR_AUTH;
	return MOSQ_ERR_SUCCESS;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	(void)event;
	(void)userdata;

	if(ed->access != MOSQ_ACL_SUBSCRIBE) return MOSQ_ERR_PLUGIN_DEFER;
	const char *user = mosquitto_client_username(ed->client);
	if(is_subscriber(user)) return MOSQ_ERR_PLUGIN_DEFER;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "oxilink_identity: refused subscription to '%s' by '%s' (client id '%s')",
			ed->topic, user ? user : "(anonymous)", mosquitto_client_id(ed->client));
	return MOSQ_ERR_ACL_DENIED;
}

static int set_subscribers(const char *list)
{
	char copy[MAX_SUBSCRIBERS * (MAX_NAME + 1)];
	if(strlen(list) >= sizeof(copy)) return 1;
	strcpy(copy, list);
	subscriber_count = 0;
	for(char *save = NULL, *name = strtok_r(copy, " ,", &save); name; name = strtok_r(NULL, " ,", &save)){
		if(subscriber_count == MAX_SUBSCRIBERS || strlen(name) > MAX_NAME) return 1;
		strcpy(subscribers[subscriber_count++], name);
	}
	return 0;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *opts, int opt_count)
{
	(void)userdata;
	const char *list = "oxilink-receiver";
	for(int i = 0; i < opt_count; i++){
		if(!strcmp(opts[i].key, "subscribers")){
			list = opts[i].value;
		}else{
			mosquitto_log_printf(MOSQ_LOG_ERR, "oxilink_identity: unknown option plugin_opt_%s", opts[i].key);
			return 1;
		}
	}
	if(set_subscribers(list)){
		mosquitto_log_printf(MOSQ_LOG_ERR, "oxilink_identity: plugin_opt_subscribers: at most %d names of at most "
				"%d characters", MAX_SUBSCRIBERS, MAX_NAME);
		return 1;
	}
	plugin_id = identifier;
	int rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	if(rc == MOSQ_ERR_SUCCESS){
		rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	}
	return rc;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	(void)userdata;
	(void)opts;
	(void)opt_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
}
