-- Argo CD health of an Emporium Store (emporium.dev/v1alpha1).
-- Argo CD runs this with the live object in `obj` (Lua 5.1) and shows the
-- returned status: Healthy, Progressing, Degraded or Suspended.
--   Suspended   spec.suspend is set (the operator changes nothing)
--   Progressing the operator has not yet looked at this generation, or the
--               shop is still converging (backing stores, migrations, rollout)
--   Degraded    the Degraded condition holds (a migration Job failed), or a
--               dependency the shop cannot start without needs a person
--               (the PaymentProvider or an external Secret is missing)
--   Healthy     the Ready condition holds
local hs = {}

local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- Reasons the operator gives a dependency condition that no waiting fixes.
local needs_a_person = {
  NotFound = true,
  SecretNotFound = true,
  SecretKeyMissing = true,
  NotConfigured = true,
}

local status = obj.status
local generation = obj.metadata and obj.metadata.generation

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is set: the operator changes nothing of this shop"
  return hs
end

if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report on the shop"
  return hs
end

if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

if status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "The operator reports the shop suspended"
  return hs
end

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.message or degraded.reason or "Degraded"
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end

for _, kind in ipairs({"PaymentProviderReady", "DatabaseReady", "CacheReady", "MessagingReady"}) do
  local c = condition(status, kind)
  if c ~= nil and c.status == "False" and needs_a_person[c.reason] then
    hs.status = "Degraded"
    hs.message = kind .. " is False (" .. c.reason .. "): " .. (c.message or "")
    return hs
  end
end

hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
else
  hs.message = "Phase " .. tostring(status.phase or "unknown")
end
return hs
