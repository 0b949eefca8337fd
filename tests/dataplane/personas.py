"""Two personas that differ in every part the applier touches, for transition tests."""

from __future__ import annotations

from netpersona.model import Persona, parse_persona_text

# A: unshaped, MTU 1450, postgres from anyone; broadcast mode, for a sysctl that B lacks
# (icmp_echo_ignore_broadcasts), so a switch either way sets sysctls.
PERSONA_A = """
network_persona:
  communication_mode: broadcast
  security_profile: medium
  allowed_protocols: [postgres, icmp]
  priority: 2
  qos_parameters: {mtu: 1450}
"""
# B: multicast mode, high profile, premium steering, other shaping, ssh from the LAN only.
PERSONA_B = """
network_persona:
  communication_mode: multicast
  security_profile: high
  allowed_protocols: [ssh, icmp, udp/5001]
  priority: 6
  qos_parameters: {egress_rate: 10mbit, egress_ceil: 15mbit, burst: 32kb, mtu: 1400}
  multicast_groups: [239.1.1.1]
  peers: [{cidr: 10.77.0.0/24}]
"""


def persona(text: str) -> Persona:
    return parse_persona_text(text)
