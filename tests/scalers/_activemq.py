"""A private ActiveMQ Classic (Debian's activemq) with Jolokia, on free loopback ports.

Debian builds ActiveMQ without its web console and its Jolokia web app (activemq-web, activemq-web-console
are among the modules it leaves out), but it packages Jolokia's agent servlet (libjolokia-core-java) and Jetty
(libjetty9-java). The broker's own Spring configuration starts a Jetty inside the broker's JVM that serves
Jolokia at /api/jolokia behind HTTP Basic authentication, as upstream's jetty.xml does. Messages go in over
STOMP. Nothing is persisted; everything lives in a temporary folder.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests._skips import needs

from ._servers import _wait_listening, free_port

ACTIVEMQ_HOME = Path("/usr/share/activemq")
JAVA_LIBS = Path("/usr/share/java")
#: Jetty and Jolokia's servlet, for the broker's class path (activemq.base/lib).
WEB_JARS = (
    "jetty9-server",
    "jetty9-servlet",
    "jetty9-security",
    "jetty9-http",
    "jetty9-io",
    "jetty9-util",
    "servlet-api",
    "jolokia-core",
    "json-simple",
)
ENABLE = needs("ActiveMQ", "apt-get install activemq libjolokia-core-java libjetty9-java")
BROKER = "ebb-test"
USER = "admin"

_CONFIG = """<beans xmlns="http://www.springframework.org/schema/beans"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="http://www.springframework.org/schema/beans
         http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
         http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="{broker}" useJmx="true"
          persistent="false" useShutdownHook="false" dataDirectory="{root}/data">
    <managementContext><managementContext createConnector="false"/></managementContext>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{stomp_port}"/>
    </transportConnectors>
  </broker>
  <bean id="loginService" class="org.eclipse.jetty.security.HashLoginService">
    <property name="name" value="ActiveMQRealm"/>
    <property name="config" value="{root}/conf/jetty-realm.properties"/>
  </bean>
  <bean id="constraint" class="org.eclipse.jetty.util.security.Constraint">
    <property name="name" value="BASIC"/>
    <property name="roles" value="admin"/>
    <property name="authenticate" value="true"/>
  </bean>
  <bean id="mapping" class="org.eclipse.jetty.security.ConstraintMapping">
    <property name="constraint" ref="constraint"/>
    <property name="pathSpec" value="/*"/>
  </bean>
  <bean id="api" class="org.eclipse.jetty.servlet.ServletContextHandler">
    <property name="contextPath" value="/api"/>
    <property name="securityHandler">
      <bean class="org.eclipse.jetty.security.ConstraintSecurityHandler">
        <property name="loginService" ref="loginService"/>
        <property name="authenticator">
          <bean class="org.eclipse.jetty.security.authentication.BasicAuthenticator"/>
        </property>
        <property name="constraintMappings"><list><ref bean="mapping"/></list></property>
      </bean>
    </property>
  </bean>
  <bean id="jolokiaServlet" class="org.springframework.beans.factory.config.MethodInvokingFactoryBean">
    <property name="targetObject" ref="api"/>
    <property name="targetMethod" value="addServlet"/>
    <property name="arguments">
      <list><value>org.jolokia.http.AgentServlet</value><value>/jolokia/*</value></list>
    </property>
  </bean>
  <bean id="jetty" class="org.eclipse.jetty.server.Server" depends-on="jolokiaServlet"
        init-method="start" destroy-method="stop">
    <constructor-arg>
      <bean class="java.net.InetSocketAddress">
        <constructor-arg value="127.0.0.1"/><constructor-arg value="{http_port}"/>
      </bean>
    </constructor-arg>
    <property name="handler" ref="api"/>
  </bean>
</beans>
"""

# What Debian's /usr/bin/activemq passes to a Java 9+ JVM.
_JVM_OPENS = [
    "--add-reads=java.xml=java.logging",
    "--add-opens=java.base/java.security=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.naming/javax.naming.spi=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
]


@dataclass(frozen=True)
class ActiveMQ:
    http_port: int
    stomp_port: int
    password: str

    @property
    def management_endpoint(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def send(self, queue: str, count: int) -> None:
        """`count` messages to `queue`, each confirmed by the broker (STOMP receipts)."""
        with socket.create_connection(("127.0.0.1", self.stomp_port), timeout=10) as sock:
            reader = sock.makefile("rb")
            sock.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
            _frame(reader, b"CONNECTED")
            for i in range(count):
                sock.sendall(f"SEND\ndestination:/queue/{queue}\nreceipt:{i}\n\nmessage {i}\0".encode())
                _frame(reader, b"RECEIPT")
            sock.sendall(b"DISCONNECT\n\n\0")


def _frame(reader: object, command: bytes) -> None:
    data = b""
    while not data.endswith(b"\0"):
        chunk = reader.read(1)  # type: ignore[attr-defined]
        if not chunk:
            raise ConnectionError("the broker closed the STOMP connection")
        data += chunk
    if not data.lstrip(b"\n").startswith(command):
        raise AssertionError(f"expected a {command!r} frame, got {data[:200]!r}")


def installed() -> bool:
    java = shutil.which("java")
    jars = all((JAVA_LIBS / f"{jar}.jar").exists() for jar in WEB_JARS)
    return bool(java) and (ACTIVEMQ_HOME / "bin" / "activemq.jar").exists() and jars


@contextmanager
def activemq_server(root: Path, password: str) -> Iterator[ActiveMQ]:
    """The broker and its Jolokia, stopped afterwards. FileNotFoundError when a package is missing."""
    if not installed():
        raise FileNotFoundError("activemq, libjolokia-core-java or libjetty9-java")
    http_port, stomp_port = free_port(), free_port()
    for folder in ("conf", "lib", "data", "tmp"):
        (root / folder).mkdir()
    for jar in WEB_JARS:
        (root / "lib" / f"{jar}.jar").symlink_to(JAVA_LIBS / f"{jar}.jar")
    (root / "conf" / "jetty-realm.properties").write_text(f"{USER}: {password}, admin\n")
    config = root / "conf" / "activemq.xml"
    config.write_text(_CONFIG.format(broker=BROKER, root=root, stomp_port=stomp_port, http_port=http_port))
    cmd = [
        shutil.which("java") or "java",
        "-Xms64m",
        "-Xmx256m",
        "-XX:+UseSerialGC",
        *_JVM_OPENS,
        f"-Dactivemq.home={ACTIVEMQ_HOME}",
        f"-Dactivemq.base={root}",
        f"-Dactivemq.conf={root / 'conf'}",
        f"-Dactivemq.data={root / 'data'}",
        f"-Djava.io.tmpdir={root / 'tmp'}",
        "-jar",
        str(ACTIVEMQ_HOME / "bin" / "activemq.jar"),
        "start",
        f"xbean:file:{config}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(stomp_port, proc, 90.0)
        _wait_listening(http_port, proc, 90.0)
        yield ActiveMQ(http_port=http_port, stomp_port=stomp_port, password=password)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
