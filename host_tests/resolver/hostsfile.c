/*
 * Test-only LD_PRELOAD library: getaddrinfo() resolves the names listed in the file $OXILINK_TEST_HOSTS
 * ("ADDRESS NAME [NAME...]" per line, like /etc/hosts) to those addresses, and everything else as usual.
 *
 * The tests need a broker *name* that resolves to a loopback address other than 127.0.0.1 (the name is what
 * the server certificate's SAN and the device's TLS check are about), on a machine whose /etc/hosts they may
 * not edit. The firmware on the unix port resolves with the C library's getaddrinfo, as lwIP does on a board;
 * this is the hosts file a test can give it. Built for the 64-bit stock port and the 32-bit esp32like build
 * by host_tests/test_broker_cli.py.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static int lookup(const char *name, char *address, size_t size)
{
	const char *path = getenv("OXILINK_TEST_HOSTS");
	FILE *f = path ? fopen(path, "r") : NULL;
	char line[512];
	int found = 0;
	if(!f) return 0;
	while(!found && fgets(line, sizeof(line), f)){
		char *save = NULL;
		char *addr = strtok_r(line, " \t\r\n", &save);
		if(!addr || addr[0] == '#') continue;
		for(char *n = strtok_r(NULL, " \t\r\n", &save); n; n = strtok_r(NULL, " \t\r\n", &save)){
			if(!strcmp(n, name) && strlen(addr) < size){
				strcpy(address, addr);
				found = 1;
				break;
			}
		}
	}
	fclose(f);
	return found;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
	static getaddrinfo_fn real;
	char address[64];
	if(!real) real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
	if(node && lookup(node, address, sizeof(address))){
		struct addrinfo numeric;
		memset(&numeric, 0, sizeof(numeric));
		if(hints) numeric = *hints;
		numeric.ai_flags |= AI_NUMERICHOST;
		return real(address, service, &numeric, res);
	}
	return real(node, service, hints, res);
}
