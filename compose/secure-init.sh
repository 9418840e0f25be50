#!/usr/bin/env bash
# One-shot secrets for compose/secure.yml, run in the apachepulsar/pulsar image (its own tools only:
# `bin/pulsar tokens` and the JDK's keytool). Idempotent: what exists is kept, so `up` again reuses
# the tokens and the certificate; `down -v` throws them away.
#
#   $PULSAR_SECRETS     Pulsar's (mounted at the same path in the pulsar container): the HS256 secret
#                       key, the superuser's token, the TLS keystore and truststore, secure.conf
#                       (appended to standalone.conf) and client.conf (for bin/pulsar-admin: the
#                       healthcheck and the grants)
#   $PRODUCER_SECRETS   the producer's token (role streampair-producer) and the CA certificate
#   $CONSUMER_SECRETS   the consumer's token (role streampair-consumer) and the CA certificate
#
# Each service's volume holds only its own token; the private CA's key is deleted once the broker's
# certificate is signed. Nothing secret is printed.
set -euo pipefail
PULSAR_SECRETS="${PULSAR_SECRETS:-/pulsar/secrets}"
PRODUCER_SECRETS="${PRODUCER_SECRETS:-/secrets/producer}"
CONSUMER_SECRETS="${CONSUMER_SECRETS:-/secrets/consumer}"
PULSAR_BIN="${PULSAR_BIN:-bin/pulsar}"
PULSAR_UID="${PULSAR_UID:-10000}"     # the Pulsar image's user
SERVICE_UID="${SERVICE_UID:-10001}"   # the streampair images' user (services/Dockerfile)
BROKER_HOST="${BROKER_HOST:-pulsar}"  # the compose service name the clients connect to
p="$PULSAR_SECRETS"
umask 077
mkdir -p "$p" "$PRODUCER_SECRETS" "$CONSUMER_SECRETS"

token() {  # role -> token on stdout
  "$PULSAR_BIN" tokens create --secret-key "file://$p/secret.key" --subject "$1"
}

if [[ ! -s $p/secret.key ]]; then
  "$PULSAR_BIN" tokens create-secret-key --output "$p/secret.key"
  echo "secure-init: generated the HS256 secret key"
fi
[[ -s $p/admin.token ]] || token admin >"$p/admin.token"
[[ -s $PRODUCER_SECRETS/token ]] || token streampair-producer >"$PRODUCER_SECRETS/token"
[[ -s $CONSUMER_SECRETS/token ]] || token streampair-consumer >"$CONSUMER_SECRETS/token"
echo "secure-init: tokens for roles admin (superuser), streampair-producer, streampair-consumer"

auth_conf() {
  cat <<EOF

### compose/secure.yml (written by compose/secure-init.sh; no secret in it, only file names)
authenticationEnabled=true
authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken
tokenSecretKey=file://$p/secret.key
authorizationEnabled=true
superUserRoles=admin
brokerClientAuthenticationPlugin=org.apache.pulsar.client.impl.auth.AuthenticationToken
brokerClientAuthenticationParameters=file://$p/admin.token
webServicePortTls=8443
brokerServicePortTls=6651
EOF
}

# TLS: a private CA and a certificate for the broker, PEM (the key as PKCS#8, no password) made with
# openssl. Pulsar's embedded bookie logs its whole configuration at start, so a keystore password
# in standalone.conf would end up in the logs; PEM files need none. Only where an image has no
# openssl, keytool (from the JDK) makes a PKCS#12 keystore instead, and its password is in the conf.
if [[ ! -s $p/ca.pem ]]; then
  if command -v openssl >/dev/null; then
    printf '%s\n' "subjectAltName=DNS:$BROKER_HOST,DNS:localhost,IP:127.0.0.1" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
      "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >"$p/broker.ext"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$p/ca.key" -out "$p/ca.pem" -days 825 \
      -subj "/CN=streampair private CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout "$p/broker.key" -out "$p/broker.csr" \
      -subj "/CN=$BROKER_HOST" 2>/dev/null
    openssl x509 -req -in "$p/broker.csr" -CA "$p/ca.pem" -CAkey "$p/ca.key" -CAcreateserial \
      -out "$p/broker.pem" -days 825 -extfile "$p/broker.ext" 2>/dev/null
    rm -f "$p/ca.key" "$p/ca.srl" "$p/broker.csr" "$p/broker.ext"   # the CA's key is not needed any more
    { auth_conf; cat <<EOF
tlsCertificateFilePath=$p/broker.pem
tlsKeyFilePath=$p/broker.key
tlsTrustCertsFilePath=$p/ca.pem
EOF
    } >"$p/secure.conf"
  else
    pass="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    ca=(-keystore "$p/ca.p12" -storetype PKCS12 -storepass "$pass")
    broker=(-keystore "$p/broker.p12" -storetype PKCS12 -storepass "$pass")
    keytool -genkeypair "${ca[@]}" -alias ca -dname "CN=streampair private CA" -keyalg RSA -keysize 2048 \
      -validity 825 -ext bc:c -ext ku:c=keyCertSign,cRLSign 2>/dev/null
    keytool -exportcert "${ca[@]}" -alias ca -rfc -file "$p/ca.pem" 2>/dev/null
    keytool -genkeypair "${broker[@]}" -alias broker -dname "CN=$BROKER_HOST" -keyalg RSA -keysize 2048 \
      -validity 825 2>/dev/null
    keytool -certreq "${broker[@]}" -alias broker -file "$p/broker.csr" 2>/dev/null
    keytool -gencert "${ca[@]}" -alias ca -infile "$p/broker.csr" -outfile "$p/broker.pem" -rfc -validity 825 \
      -ext "SAN=dns:$BROKER_HOST,dns:localhost,ip:127.0.0.1" -ext ku:c=digitalSignature,keyEncipherment \
      -ext eku=serverAuth 2>/dev/null
    keytool -importcert "${broker[@]}" -alias ca -file "$p/ca.pem" -noprompt 2>/dev/null
    keytool -importcert "${broker[@]}" -alias broker -file "$p/broker.pem" -noprompt 2>/dev/null
    keytool -importcert -keystore "$p/truststore.p12" -storetype PKCS12 -storepass "$pass" -alias ca \
      -file "$p/ca.pem" -noprompt 2>/dev/null
    rm -f "$p/ca.p12" "$p/broker.csr"
    { auth_conf; cat <<EOF
tlsEnabledWithKeyStore=true
tlsKeyStoreType=PKCS12
tlsKeyStore=$p/broker.p12
tlsKeyStorePassword=$pass
tlsTrustStoreType=PKCS12
tlsTrustStore=$p/truststore.p12
tlsTrustStorePassword=$pass
EOF
    } >"$p/secure.conf"
    echo "secure-init: no openssl in this image: TLS from a PKCS#12 keystore (its password is in secure.conf)"
  fi
  echo "secure-init: a private CA and a certificate for $BROKER_HOST, localhost and 127.0.0.1"
fi
cat >"$p/client.conf" <<EOF
webServiceUrl=https://localhost:8443/
authPlugin=org.apache.pulsar.client.impl.auth.AuthenticationToken
authParams=file://$p/admin.token
tlsTrustCertsFilePath=$p/ca.pem
tlsEnableHostnameVerification=false
EOF
cp "$p/ca.pem" "$PRODUCER_SECRETS/ca.pem"
cp "$p/ca.pem" "$CONSUMER_SECRETS/ca.pem"
# Who may read what: the owner only (the CA certificate is public). Run as root, the init container
# has CHOWN, DAC_OVERRIDE and FOWNER (compose/secure.yml): a second `up` reads what it left.
if [[ $(id -u) == 0 ]]; then
  chown -R "$PULSAR_UID:0" "$p"
  chown -R "$SERVICE_UID:$SERVICE_UID" "$PRODUCER_SECRETS" "$CONSUMER_SECRETS"
fi
chmod 0500 "$p" "$PRODUCER_SECRETS" "$CONSUMER_SECRETS"
find "$p" "$PRODUCER_SECRETS" "$CONSUMER_SECRETS" -type f -exec chmod 0400 {} +
chmod 0444 "$p/ca.pem" "$PRODUCER_SECRETS/ca.pem" "$CONSUMER_SECRETS/ca.pem"
echo "secure-init: done"
