"""Admin registrations for agents, sessions, runs and events."""

from django.contrib import admin

from agents.models import Agent, AgentSession, KnowledgeArticle, Run, RunEvent, Thread

admin.site.register([Agent, AgentSession, Thread, Run, RunEvent, KnowledgeArticle])
