/*
 * SrvJvm.java - the JVM server of tests/extra/srv_jvm.sh: the HTTP/1.1
 * keep-alive protocol of build/progs/srvload_http (GET PATH is answered
 * "path=PATH n=N h=H\n", N the requests answered on this connection, H the
 * FNV-1a 32 hash of PATH in hex), on one NIO selector thread (epoll and its
 * wakeup pipe, as Netty, Jetty and Tomcat use), while worker threads churn
 * a heap of MIB MiB (objects made and dropped: the garbage collector runs,
 * the JIT compiles) and a checksum thread re-reads a fixed table and prints
 * "ERROR" if it ever changes.
 *
 * usage: java -Xmx... SrvJvm.java ADDR PORT MIB
 * Prints "listening" once it serves, then a line per 10 s.
 */
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Random;

public class SrvJvm {
	static final class Conn {
		final ByteBuffer in = ByteBuffer.allocate(8192);
		long answered;
	}

	static int fnv1a(byte[] b, int off, int len) {
		int h = 0x811c9dc5;
		for (int i = 0; i < len; i++) {
			h ^= b[off + i] & 0xff;
			h *= 16777619;
		}
		return h;
	}

	static int find(byte[] b, int len) {
		for (int i = 0; i + 3 < len; i++)
			if (b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' && b[i + 3] == '\n')
				return i;
		return -1;
	}

	/* Answer every whole request of @c; false: close it. */
	static boolean serve(SocketChannel ch, Conn c) throws Exception {
		int end;
		while ((end = find(c.in.array(), c.in.position())) >= 0) {
			byte[] b = c.in.array();
			int sp = 4, sp2 = sp;
			if (end < 5 || b[0] != 'G' || b[1] != 'E' || b[2] != 'T' || b[3] != ' ')
				return false;
			while (sp2 < end && b[sp2] != ' ')
				sp2++;
			String path = new String(b, sp, sp2 - sp, StandardCharsets.US_ASCII);
			c.answered++;
			String body = String.format("path=%s n=%d h=%08x\n", path, c.answered,
						    fnv1a(b, sp, sp2 - sp));
			String out = "HTTP/1.1 200 OK\r\nContent-Length: " + body.length()
				     + "\r\nConnection: keep-alive\r\n\r\n" + body;
			ByteBuffer o = ByteBuffer.wrap(out.getBytes(StandardCharsets.US_ASCII));
			while (o.hasRemaining())
				if (ch.write(o) == 0)
					Thread.onSpinWait(); /* the client reads its answers: rare */
			int used = end + 4, left = c.in.position() - used;
			System.arraycopy(b, used, b, 0, left);
			c.in.position(left);
		}
		return c.in.hasRemaining();
	}

	public static void main(String[] a) throws Exception {
		int mib = Integer.parseInt(a[2]);
		List<long[]> heap = new ArrayList<>();
		for (int i = 0; i < mib; i++)
			heap.add(new long[131072]); /* 1 MiB each */
		for (int t = 0; t < 2; t++) {
			final int seed = t;
			Thread w = new Thread(() -> {
				Random r = new Random(seed);
				while (true) {
					int i = r.nextInt(heap.size());
					long[] n = new long[131072];
					n[r.nextInt(n.length)] = r.nextLong();
					synchronized (heap) {
						heap.set(i, n);
					}
					try {
						Thread.sleep(5);
					} catch (InterruptedException e) {
						return;
					}
				}
			}, "churn-" + t);
			w.setDaemon(true);
			w.start();
		}
		final long[] table = new long[65536];
		for (int i = 0; i < table.length; i++)
			table[i] = i * 0x9e3779b97f4a7c15L;
		Thread check = new Thread(() -> {
			long want = 0;
			for (long v : table)
				want += v;
			long last = System.nanoTime();
			while (true) {
				long s = 0;
				for (long v : table)
					s += v;
				if (s != want)
					System.out.println("ERROR table checksum " + s + " != " + want);
				if (System.nanoTime() - last > 10_000_000_000L) {
					System.out.println("alive heap " + heap.size() + " MiB");
					last = System.nanoTime();
				}
				try {
					Thread.sleep(20);
				} catch (InterruptedException e) {
					return;
				}
			}
		}, "checksum");
		check.setDaemon(true);
		check.start();

		Selector sel = Selector.open();
		ServerSocketChannel srv = ServerSocketChannel.open();
		srv.bind(new InetSocketAddress(a[0], Integer.parseInt(a[1])), 128);
		srv.configureBlocking(false);
		srv.register(sel, SelectionKey.OP_ACCEPT);
		System.out.println("listening");
		System.out.flush();
		while (true) {
			sel.select();
			Iterator<SelectionKey> it = sel.selectedKeys().iterator();
			while (it.hasNext()) {
				SelectionKey k = it.next();
				it.remove();
				if (k.isAcceptable()) {
					SocketChannel ch = srv.accept();
					if (ch == null)
						continue;
					ch.configureBlocking(false);
					ch.register(sel, SelectionKey.OP_READ, new Conn());
				} else if (k.isReadable()) {
					SocketChannel ch = (SocketChannel)k.channel();
					Conn c = (Conn)k.attachment();
					int n = -1;
					try {
						n = ch.read(c.in);
						if (n > 0 && !serve(ch, c))
							n = -1;
					} catch (Exception e) {
						n = -1;
					}
					if (n < 0) {
						k.cancel();
						ch.close();
					}
				}
			}
		}
	}
}
