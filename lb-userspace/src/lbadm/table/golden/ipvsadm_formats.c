/* Writes the golden listings lbadm's table tests compare against, with the printf formats
 * ipvsadm 1.26 uses (print_title, print_service_entry, print_largenum, list_conn,
 * list_timeout; see ipvsadm(8) and its source), filled with the data of the tests' fixture
 * (table/tests.rs). Regenerate: cc -o /tmp/g ipvsadm_formats.c && /tmp/g . */
#include <stdio.h>
#include <string.h>

#define FMT_STATS 1
#define FMT_RATE 2
#define FMT_THRESHOLDS 4
#define FMT_EXACT 8

static FILE *out;

static void largenum(unsigned long long i, int format) {
	char tmp[32];
	size_t len;
	if (format & FMT_EXACT) {
		len = snprintf(tmp, 32, "%llu", i);
		fprintf(out, "%*llu", len <= 8 ? 9 : (int)len + 1, i);
		return;
	}
	if (i < 100000000ULL) fprintf(out, "%9llu", i);
	else if (i < 1000000000ULL) fprintf(out, "%8lluK", i / 1000);
	else if (i < 100000000000ULL) fprintf(out, "%8lluM", i / 1000000);
	else if (i < 100000000000000ULL) fprintf(out, "%8lluG", i / 1000000000ULL);
	else fprintf(out, "%8lluT", i / 1000000000000ULL);
}

static void title(int format) {
	if (format & FMT_STATS)
		fprintf(out, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n",
			"Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes");
	else if (format & FMT_RATE)
		fprintf(out, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n",
			"Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS");
	else if (format & FMT_THRESHOLDS)
		fprintf(out, "%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n",
			"Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn");
	else
		fprintf(out, "Prot LocalAddress:Port Scheduler Flags\n"
			"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
}

struct stats { unsigned long long conns, inpkts, outpkts, inbytes, outbytes; };
struct rates { unsigned long long cps, inpps, outpps, inbps, outbps; };
struct real { const char *name, *fwd; int weight; unsigned active, inactive; struct stats s; struct rates r; };
struct service { const char *name, *sched, *flags; struct stats s; struct rates r; int nreals; struct real reals[2]; };

/* The fixture, in ipvsadm's sorted order: IPv4 before IPv6, TCP before UDP. */
static struct service services[] = {
	{"TCP  192.0.2.100:80", "wrr", " persistent 300 mask 255.255.255.0",
	 {12, 123456789, 0, 123456789012ULL, 99999999}, {1234, 56789, 0, 123456789, 0}, 2,
	 {{"192.0.2.11:80", "Route", 3, 5, 0, {5000000000ULL, 100000000000000ULL, 0, 7, 0}, {7, 123456789, 0, 5000000000ULL, 0}},
	  {"192.0.2.12:80", "Route", 2, 0, 1, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}}}},
	{"UDP  192.0.2.100:53", "rr", "", {3, 30, 0, 3000, 0}, {0, 0, 0, 0, 0}, 1,
	 {{"192.0.2.13:5353", "Masq", 1, 0, 3, {3, 30, 30, 3000, 6000}, {1, 2, 3, 4, 5}}}},
	{"TCP  [2001:db8::100]:443", "mh", "", {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}, 1,
	 {{"[2001:db8::11]:443", "Route", 1, 2, 0, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}}}},
};

static void listing(const char *file, int format) {
	out = fopen(file, "w");
	fprintf(out, "IP Virtual Server version 1.2.1 (size=1000)\n");
	title(format);
	for (unsigned i = 0; i < sizeof services / sizeof services[0]; i++) {
		struct service *se = &services[i];
		if (format & (FMT_STATS)) {
			fprintf(out, "%-33s", se->name);
			largenum(se->s.conns, format); largenum(se->s.inpkts, format); largenum(se->s.outpkts, format);
			largenum(se->s.inbytes, format); largenum(se->s.outbytes, format);
		} else if (format & FMT_RATE) {
			fprintf(out, "%-33s", se->name);
			largenum(se->r.cps, format); largenum(se->r.inpps, format); largenum(se->r.outpps, format);
			largenum(se->r.inbps, format); largenum(se->r.outbps, format);
		} else {
			/* ipvsadm has no thresholds branch for the service line. */
			fprintf(out, "%s %s%s", se->name, se->sched, se->flags);
		}
		fprintf(out, "\n");
		for (int j = 0; j < se->nreals; j++) {
			struct real *e = &se->reals[j];
			if (format & FMT_STATS) {
				fprintf(out, "  -> %-28s", e->name);
				largenum(e->s.conns, format); largenum(e->s.inpkts, format); largenum(e->s.outpkts, format);
				largenum(e->s.inbytes, format); largenum(e->s.outbytes, format);
				fprintf(out, "\n");
			} else if (format & FMT_RATE) {
				fprintf(out, "  -> %-28s %8u %8u %8u", e->name, (unsigned)e->r.cps, (unsigned)e->r.inpps, (unsigned)e->r.outpps);
				largenum(e->r.inbps, format); largenum(e->r.outbps, format);
				fprintf(out, "\n");
			} else if (format & FMT_THRESHOLDS) {
				fprintf(out, "  -> %-28s %-10u %-10u %-10u %-10u\n", e->name, 0, 0, e->active, e->inactive);
			} else {
				fprintf(out, "  -> %-28s %-7s %-6d %-10u %-10u\n", e->name, e->fwd, e->weight, e->active, e->inactive);
			}
		}
	}
	fclose(out);
}

int main(void) {
	listing("list.txt", 0);
	listing("stats.txt", FMT_STATS);
	listing("stats_exact.txt", FMT_STATS | FMT_EXACT);
	listing("rate.txt", FMT_RATE);
	listing("thresholds.txt", FMT_THRESHOLDS);

	out = fopen("connections.txt", "w");
	fprintf(out, "IPVS connection entries\n");
	fprintf(out, "pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual", "destination");
	fprintf(out, "%-3s %-6s %-11s %-18s %-18s %s\n", "TCP", "14:59", "ESTABLISHED", "198.51.100.7:40001", "192.0.2.100:80", "192.0.2.11:80");
	fprintf(out, "%-3s %-6s %-11s %-18s %-18s %s\n", "UDP", "05:00", "UDP", "[2001:db8::7]:5300", "[2001:db8::100]:53", "[2001:db8::11]:53");
	fclose(out);

	out = fopen("timeout.txt", "w");
	fprintf(out, "Timeout (tcp tcpfin udp): %d %d %d\n", 900, 120, 300);
	fclose(out);

	/* -S (FMT_RULE): "-A %s -s %s", " -p %u", " -M %s"; "-a %s -r %s %s -w %d". */
	out = fopen("save.txt", "w");
	fprintf(out, "-A %s -s %s", "-t 192.0.2.100:80", "wrr");
	fprintf(out, " -p %u", 300);
	fprintf(out, " -M %s", "255.255.255.0");
	fprintf(out, "\n");
	fprintf(out, "-a %s -r %s %s -w %d\n", "-t 192.0.2.100:80", "192.0.2.11:80", "-g", 3);
	fprintf(out, "-a %s -r %s %s -w %d\n", "-t 192.0.2.100:80", "192.0.2.12:80", "-g", 2);
	fprintf(out, "-A %s -s %s\n", "-u 192.0.2.100:53", "rr");
	fprintf(out, "-a %s -r %s %s -w %d\n", "-u 192.0.2.100:53", "192.0.2.13:5353", "-m", 1);
	fprintf(out, "-A %s -s %s", "-t [2001:db8::100]:443", "mh");
	fprintf(out, " -p %u", 600);
	fprintf(out, " -M %i", 64);
	fprintf(out, "\n");
	fprintf(out, "-a %s -r %s %s -w %d\n", "-t [2001:db8::100]:443", "[2001:db8::11]:443", "-g", 1);
	fclose(out);
	return 0;
}
