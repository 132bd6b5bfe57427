/// The JSON API's OpenAPI 3 document, served at `/api/v1/openapi.json`: the same bytes as docs/openapi.json
/// (a test compares them; after editing that file, run contrib/update-openapi.sh).
enum APIDocument {
    static let json = #"""
{
  "openapi": "3.0.3",
  "info": {
    "title": "vspcd JSON API",
    "version": "1",
    "description": "The consoles of a vspcd (Virtual Serial Port Concentrator for VMware vSphere): list them, read their history and their console logs, mint browser console URLs. Every call but this document needs an API token (`vspc token create`) as `Authorization: Bearer <token>`. A token sees only the consoles its `--vms` globs allow; the others answer 404, as if they did not exist. Calls are audited as `api-call` events."
  },
  "servers": [{"url": "/api/v1"}],
  "security": [{"bearer": []}],
  "paths": {
    "/openapi.json": {
      "get": {
        "summary": "This document",
        "operationId": "openapi",
        "security": [],
        "responses": {
          "200": {"description": "The OpenAPI 3 document of the API", "content": {"application/json": {"schema": {"type": "object"}}}}
        }
      }
    },
    "/consoles": {
      "get": {
        "summary": "The consoles the token sees (the fields of `vspc list --json`)",
        "operationId": "listConsoles",
        "responses": {
          "200": {"description": "The consoles, sorted by name, label, uuid", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Console"}}}}},
          "401": {"$ref": "#/components/responses/Unauthorized"}
        }
      }
    },
    "/consoles/{vm}": {
      "parameters": [{"$ref": "#/components/parameters/vm"}, {"$ref": "#/components/parameters/label"}],
      "get": {
        "summary": "One console",
        "operationId": "getConsole",
        "responses": {
          "200": {"description": "The console", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Console"}}}},
          "400": {"$ref": "#/components/responses/BadRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/NotFound"},
          "409": {"$ref": "#/components/responses/Ambiguous"}
        }
      }
    },
    "/consoles/{vm}/history": {
      "parameters": [{"$ref": "#/components/parameters/vm"}, {"$ref": "#/components/parameters/label"}],
      "get": {
        "summary": "The console's recorded events, oldest first (as `vspc history --json`)",
        "operationId": "getHistory",
        "parameters": [
          {"name": "since", "in": "query", "required": false, "description": "Only events at or after this time (ISO 8601, e.g. 2026-12-01T08:00:00Z)", "schema": {"type": "string", "format": "date-time"}},
          {"name": "limit", "in": "query", "required": false, "description": "Only the newest this many events (default and most: 10000)", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}
        ],
        "responses": {
          "200": {"description": "The VM and its events", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/History"}}}},
          "400": {"$ref": "#/components/responses/BadRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/NotFound"},
          "409": {"$ref": "#/components/responses/Ambiguous"}
        }
      }
    },
    "/consoles/{vm}/log": {
      "parameters": [{"$ref": "#/components/parameters/vm"}, {"$ref": "#/components/parameters/label"}],
      "get": {
        "summary": "What the console printed, raw, across its rotated log files (as `vspc log`)",
        "description": "A line belongs to the window when the time of its first byte is at or after `since` and before `until`. Without either, the whole log that is kept. At most 16 MiB: a wider window is refused (413).",
        "operationId": "getLog",
        "parameters": [
          {"name": "since", "in": "query", "required": false, "schema": {"type": "string", "format": "date-time"}},
          {"name": "until", "in": "query", "required": false, "schema": {"type": "string", "format": "date-time"}}
        ],
        "responses": {
          "200": {"description": "The console's bytes", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
          "400": {"$ref": "#/components/responses/BadRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/NotFound"},
          "409": {"$ref": "#/components/responses/Ambiguous"},
          "413": {"description": "More than 16 MiB in that window", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }
      }
    },
    "/consoles/{vm}/urls": {
      "parameters": [{"$ref": "#/components/parameters/vm"}, {"$ref": "#/components/parameters/label"}],
      "post": {
        "summary": "Mint a one-time browser console URL (as `vspc url`)",
        "description": "A read-only token may mint only read-only URLs (403 otherwise). Always recorded in the audit.",
        "operationId": "mintURL",
        "requestBody": {
          "required": false,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/URLRequest"}}}
        },
        "responses": {
          "201": {"description": "The URL", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/URL"}}}},
          "400": {"$ref": "#/components/responses/BadRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "403": {"description": "The token is read-only and the URL would write", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
          "404": {"$ref": "#/components/responses/NotFound"},
          "409": {"$ref": "#/components/responses/Ambiguous"},
          "501": {"description": "This vspcd cannot mint console URLs", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }
      }
    }
  },
  "components": {
    "securitySchemes": {
      "bearer": {"type": "http", "scheme": "bearer", "description": "A token from `vspc token create`"}
    },
    "parameters": {
      "vm": {"name": "vm", "in": "path", "required": true, "description": "The VM's name, its uuid in any spelling, or a unique prefix of either", "schema": {"type": "string", "minLength": 1, "maxLength": 1024}},
      "label": {"name": "label", "in": "query", "required": false, "description": "The serial port's label (empty: the first port); any label when absent", "schema": {"type": "string", "pattern": "^[!-\"$-9;-~]{0,64}$"}}
    },
    "responses": {
      "BadRequest": {"description": "A parameter out of its bounds", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Unauthorized": {"description": "No token, or one that is unknown, revoked or expired", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "NotFound": {"description": "No console of that name that the token sees", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Ambiguous": {"description": "The name fits several consoles, none of them connected: they are listed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    },
    "schemas": {
      "Console": {
        "type": "object",
        "required": ["name", "uuid", "label", "port", "connected", "clients", "listening", "migrating"],
        "properties": {
          "name": {"type": "string"},
          "uuid": {"type": "string", "description": "32 lowercase hex digits"},
          "label": {"type": "string"},
          "port": {"type": "integer"},
          "connected": {"type": "boolean", "description": "A VM connection is attached now"},
          "clients": {"type": "integer", "description": "People attached now, over every door"},
          "since": {"type": "string", "description": "When the VM connected, or was last seen (ISO 8601, UTC)"},
          "listening": {"type": "boolean"},
          "listenError": {"type": "string"},
          "migrating": {"type": "boolean", "description": "A vMotion is in progress"},
          "peer": {"type": "string", "description": "The address of the VM's host connection"},
          "saved": {"type": "boolean", "description": "The assignment is committed to the database"},
          "owner": {"type": "string", "description": "Several daemons: the node that owns the console"},
          "elsewhere": {"type": "boolean", "description": "Several daemons: the VM is not connected here, and another node that is alive owns the console"}
        }
      },
      "Event": {
        "type": "object",
        "required": ["time", "kind", "label"],
        "properties": {
          "id": {"type": "integer"},
          "time": {"type": "string", "format": "date-time"},
          "kind": {"type": "string", "description": "vm-connect, client-attach, api-call, ..."},
          "uuid": {"type": "string"},
          "label": {"type": "string"},
          "name": {"type": "string"},
          "peer": {"type": "string"},
          "detail": {"type": "string"},
          "door": {"type": "string"},
          "user": {"type": "string"},
          "keyComment": {"type": "string"},
          "fingerprint": {"type": "string"}
        }
      },
      "History": {
        "type": "object",
        "required": ["uuid", "name", "events"],
        "properties": {
          "uuid": {"type": "string"},
          "name": {"type": "string"},
          "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}
        }
      },
      "Candidate": {
        "type": "object",
        "required": ["uuid", "label", "name", "connected"],
        "properties": {
          "uuid": {"type": "string"},
          "label": {"type": "string"},
          "name": {"type": "string"},
          "port": {"type": "integer"},
          "connected": {"type": "boolean"},
          "lastSeen": {"type": "string"}
        }
      },
      "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
          "error": {"type": "string"},
          "candidates": {"type": "array", "items": {"$ref": "#/components/schemas/Candidate"}}
        }
      },
      "URLRequest": {
        "type": "object",
        "properties": {
          "mode": {"type": "string", "enum": ["read-only", "read-write"], "description": "Default: read-write, or read-only for a read-only token"},
          "ttl": {"type": "integer", "minimum": 1, "maximum": 86400, "description": "Seconds the URL stays good (default: 600, as vspc url)"}
        }
      },
      "URL": {
        "type": "object",
        "required": ["url"],
        "properties": {"url": {"type": "string"}}
      }
    }
  }
}
"""#
}
