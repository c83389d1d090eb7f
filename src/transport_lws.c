/* tether: transport_lws (being written) */
